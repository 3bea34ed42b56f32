// jitbot sandbox page: the local Slack as one person sees it. Plain JavaScript, no build step.
// State arrives whole over server-sent events (/api/events); every action is a POST that the
// sandbox turns into what Slack would send the bot (slash command, view_submission, block_actions).
"use strict";

const ui = {
  state: null,
  me: localStorage.getItem("jitbot-sandbox-me"),
  conv: "dm",
  instance: null,
  modalKey: null, // the open modal's id + blocks: re-rendered only when these change, so typing survives
  seen: {},
};

const EMOJI = {
  warning: "⚠️", x: "❌", white_check_mark: "✅", no_entry_sign: "🚫", lock: "🔒", alarm_clock: "⏰",
  rotating_light: "🚨", no_entry: "⛔", hourglass_flowing_sand: "⏳", gear: "⚙️", hourglass: "⌛",
  unlock: "🔓", key: "🔑", information_source: "ℹ️", bell: "🔔", tada: "🎉", eyes: "👀",
  leftwards_arrow_with_hook: "↩️", arrows_counterclockwise: "🔄",
};

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "html") node.innerHTML = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// ── text: Slack mrkdwn and plain_text ───────────────────────────────────────────────────────────
function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function unescapeSlack(text) {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function emoji(html) {
  return html.replace(/:([a-z0-9_+-]+):/g, (whole, name) => EMOJI[name] || whole);
}

function formatPlain(text) {
  let html = escapeHtml(unescapeSlack(text));
  const pres = [];
  html = html.replace(/```([\s\S]*?)```/g, (_, body) => { pres.push(body); return `\u0000${pres.length - 1}\u0000`; });
  html = html.replace(/`([^`\n]+)`/g, "<code>$1</code>");
  html = html.replace(/(^|[\s(])\*([^*\n]+)\*(?=$|[\s).,:;!?])/g, "$1<b>$2</b>");
  html = html.replace(/(^|[\s(])_([^_\n]+)_(?=$|[\s).,:;!?])/g, "$1<i>$2</i>");
  html = html.replace(/(^|[\s(])~([^~\n]+)~(?=$|[\s).,:;!?])/g, "$1<s>$2</s>");
  html = emoji(html).replace(/\n/g, "<br>");
  return html.replace(/\u0000(\d+)\u0000/g, (_, i) => `<pre>${pres[Number(i)]}</pre>`);
}

function userName(id) {
  const user = (ui.state && ui.state.users[id]) || null;
  return user ? user.real_name || user.name : id;
}

function channelName(id) {
  const channel = ui.state && ui.state.channels.find((c) => c.id === id);
  return channel ? channel.name : id;
}

function formatDate(seconds, format, fallback) {
  const date = new Date(Number(seconds) * 1000);
  if (Number.isNaN(date.getTime())) return escapeHtml(fallback || "");
  const day = date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  const time = date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return escapeHtml(format.replace(/\{date[a-z_]*\}/g, day).replace(/\{time[a-z_]*\}/g, time));
}

function formatToken(token) {
  const [body, label] = token.split("|", 2);
  if (body.startsWith("@")) return `<span class="mention">@${escapeHtml(userName(body.slice(1)))}</span>`;
  if (body.startsWith("#")) return `<span class="mention">#${escapeHtml(label || channelName(body.slice(1)))}</span>`;
  if (body.startsWith("!date^")) {
    const [, seconds, format] = body.split("^");
    return formatDate(seconds, format || "{date} {time}", label);
  }
  if (body.startsWith("!subteam^")) return `<span class="mention">@${escapeHtml(label || body.slice(9))}</span>`;
  if (body.startsWith("!")) return `<span class="mention">@${escapeHtml(label || body.slice(1))}</span>`;
  if (/^(https?:|mailto:)/.test(body)) {
    return `<a href="${escapeHtml(body)}" target="_blank" rel="noopener noreferrer">${escapeHtml(label || body)}</a>`;
  }
  return escapeHtml(label || body);
}

function mrkdwn(text) {
  let html = "";
  let last = 0;
  for (const match of text.matchAll(/<([^<>\n]+)>/g)) {
    html += formatPlain(text.slice(last, match.index)) + formatToken(unescapeSlack(match[1]));
    last = match.index + match[0].length;
  }
  return html + formatPlain(text.slice(last));
}

function textObject(object) {
  if (!object) return el("span");
  if (object.type === "mrkdwn") return el("span", { html: mrkdwn(object.text || "") });
  return el("span", { html: emoji(escapeHtml(object.text || "")).replace(/\n/g, "<br>") });
}

function plainText(object) {
  return object ? object.text || "" : "";
}

// ── Block Kit ───────────────────────────────────────────────────────────────────────────────────
// ctx: { kind: "message", message } or { kind: "view", view }; unknown types are shown, never dropped.
function unsupported(what, type) {
  return el("div", { class: "unsupported", "data-unsupported": type }, `unsupported ${what}: ${type}`);
}

function renderBlocks(blocks, ctx) {
  return el("div", { class: "blocks" }, (blocks || []).map((block) => renderBlock(block, ctx)));
}

function renderBlock(block, ctx) {
  const box = (...children) => el("div", { class: `block ${block.type}`, "data-block-id": block.block_id }, ...children);
  switch (block.type) {
    case "section": {
      const main = el("div", {}, block.text ? textObject(block.text) : null);
      if (block.fields) main.append(el("div", { class: "fields" }, block.fields.map(textObject)));
      return box(main, block.accessory ? renderElement(block.accessory, block, ctx) : null);
    }
    case "header":
      return box(textObject(block.text));
    case "divider":
      return el("hr");
    case "context":
      return box(
        (block.elements || []).map((item) =>
          item.type === "image" ? el("span", {}, `[${item.alt_text || "image"}] `) : textObject(item),
        ),
      );
    case "actions":
      return box((block.elements || []).map((element) => renderElement(element, block, ctx)));
    case "input":
      return renderInput(block, ctx);
    case "image":
      return box(el("span", { class: "muted" }, `[image: ${block.alt_text || ""}]`));
    default:
      return unsupported("block", block.type);
  }
}

function renderElement(element, block, ctx) {
  if (element.type === "button") {
    return el(
      "button",
      {
        class: `block-button ${element.style || ""}`,
        type: "button",
        "data-action-id": element.action_id,
        onclick: () => confirmThen(element.confirm, () => press(element, block, ctx)),
      },
      plainText(element.text),
    );
  }
  if (ctx.kind === "view" && ["static_select", "radio_buttons", "checkboxes"].includes(element.type)) {
    // An interactive element outside an input block dispatches block_actions at once.
    const control = renderControl(element, block);
    control.addEventListener("change", () => {
      const value = readControl(element, control);
      post("view-action", { user: ui.me, view: ctx.view.id, block_id: block.block_id, action_id: element.action_id, value });
    });
    return control;
  }
  return unsupported("element", element.type);
}

function press(element, block, ctx) {
  if (element.url) window.open(element.url, "_blank", "noopener");
  if (ctx.kind === "home") {
    return post("home-click", { user: ui.me, action_id: element.action_id, block_id: block.block_id });
  }
  if (ctx.kind === "view") {
    return post("view-action", { user: ui.me, view: ctx.view.id, action_id: element.action_id, block_id: block.block_id });
  }
  return post("click", {
    user: ui.me,
    channel: ctx.message.channel,
    ts: ctx.message.ts,
    action_id: element.action_id,
    block_id: block.block_id,
  });
}

function confirmThen(confirm, then) {
  if (!confirm) return then();
  const layer = $("#confirm-layer");
  const close = () => { layer.hidden = true; layer.replaceChildren(); };
  layer.replaceChildren(
    el("div", { class: "modal", role: "dialog", id: "confirm" },
      el("h2", {}, plainText(confirm.title) || "Are you sure?"),
      el("div", { class: "body" }, textObject(confirm.text)),
      el("footer", {},
        el("button", { type: "button", onclick: close }, plainText(confirm.deny) || "Cancel"),
        el("button", { type: "button", class: "submit", id: "confirm-yes", onclick: () => { close(); then(); } },
          plainText(confirm.confirm) || "Yes"),
      ),
    ),
  );
  layer.hidden = false;
}

function options(element) {
  const all = [...(element.options || [])];
  for (const group of element.option_groups || []) all.push(...(group.options || []));
  return all;
}

function renderControl(element, block) {
  const id = `in-${block.block_id}`;
  switch (element.type) {
    case "plain_text_input": {
      const attrs = { id, name: block.block_id, placeholder: plainText(element.placeholder), maxlength: element.max_length };
      const control = element.multiline ? el("textarea", attrs) : el("input", { ...attrs, type: "text" });
      control.value = element.initial_value || "";
      return control;
    }
    case "email_text_input":
    case "url_text_input": {
      const control = el("input", { id, type: "text", placeholder: plainText(element.placeholder) });
      control.value = element.initial_value || "";
      return control;
    }
    case "number_input": {
      const control = el("input", {
        id, type: "number", step: element.is_decimal_allowed ? "any" : "1", min: element.min_value, max: element.max_value,
      });
      control.value = element.initial_value || "";
      return control;
    }
    case "datepicker": {
      const control = el("input", { id, type: "date" });
      control.value = element.initial_date || "";
      return control;
    }
    case "timepicker": {
      const control = el("input", { id, type: "time" });
      control.value = element.initial_time || "";
      return control;
    }
    case "static_select":
    case "multi_static_select": {
      const multiple = element.type === "multi_static_select";
      const control = el("select", { id, multiple });
      if (!multiple) control.append(el("option", { value: "" }, plainText(element.placeholder) || "Choose…"));
      const chosen = new Set(
        multiple ? (element.initial_options || []).map((o) => o.value) : [element.initial_option && element.initial_option.value],
      );
      for (const option of options(element)) {
        control.append(el("option", { value: option.value, selected: chosen.has(option.value) }, plainText(option.text)));
      }
      return control;
    }
    case "radio_buttons":
    case "checkboxes": {
      const kind = element.type === "radio_buttons" ? "radio" : "checkbox";
      const chosen = new Set(
        kind === "radio"
          ? [element.initial_option && element.initial_option.value]
          : (element.initial_options || []).map((o) => o.value),
      );
      return el("div", { id, class: "choices" }, options(element).map((option) =>
        el("label", { class: "choice" },
          el("input", { type: kind, name: id, value: option.value, checked: chosen.has(option.value) }),
          " ", textObject(option.text),
          option.description ? el("div", { class: "hint" }, textObject(option.description)) : null,
        ),
      ));
    }
    default:
      return null;
  }
}

// The value submit_view takes: text, an option value, or a list of option values; null when blank.
function readControl(element, control) {
  switch (element.type) {
    case "static_select":
    case "datepicker":
    case "timepicker":
      return control.value || null;
    case "multi_static_select":
      return [...control.selectedOptions].map((o) => o.value);
    case "radio_buttons": {
      const picked = control.querySelector("input:checked");
      return picked ? picked.value : null;
    }
    case "checkboxes":
      return [...control.querySelectorAll("input:checked")].map((i) => i.value);
    default:
      return control.value === "" ? null : control.value;
  }
}

function renderInput(block, ctx) {
  const element = block.element || {};
  const control = renderControl(element, block);
  const wrapper = el("div", { class: "block input", "data-block-id": block.block_id },
    el("label", { for: `in-${block.block_id}` }, plainText(block.label), block.optional ? el("span", { class: "muted" }, " (optional)") : null),
    control || unsupported("element", element.type),
    block.hint ? el("div", { class: "hint" }, textObject(block.hint)) : null,
    el("div", { class: "input-error" }),
  );
  if (control && block.dispatch_action && ctx.kind === "view") {
    control.addEventListener("change", () =>
      post("view-action", {
        user: ui.me, view: ctx.view.id, block_id: block.block_id, action_id: element.action_id, value: readControl(element, control),
      }),
    );
  }
  return wrapper;
}

// ── the modal ───────────────────────────────────────────────────────────────────────────────────
function renderModal() {
  const layer = $("#modal-layer");
  const stack = (ui.state.views && ui.state.views[ui.me]) || [];
  const view = stack[stack.length - 1];
  if (!view) {
    layer.hidden = true;
    layer.replaceChildren();
    ui.modalKey = null;
    return;
  }
  const key = view.id + JSON.stringify(view.blocks) + view.title;
  if (key !== ui.modalKey) {
    ui.modalKey = key;
    const ctx = { kind: "view", view };
    layer.replaceChildren(
      el("form", { class: "modal", id: "modal", "data-view-id": view.id, onsubmit: (event) => { event.preventDefault(); submit(view); } },
        el("h2", {}, view.title),
        el("div", { class: "body" }, renderBlocks(view.blocks, ctx), el("div", { class: "modal-error", id: "modal-error" })),
        el("footer", {},
          el("button", { type: "button", id: "modal-close", onclick: () => post("close", { user: ui.me, view: view.id }) }, view.close || "Close"),
          view.submit ? el("button", { type: "submit", class: "submit", id: "modal-submit" }, view.submit) : null,
        ),
      ),
    );
    layer.hidden = false;
  }
  showErrors(view.errors || {});
}

function showErrors(errors) {
  for (const input of document.querySelectorAll("#modal .block.input")) {
    const message = errors[input.dataset.blockId] || "";
    input.classList.toggle("has-error", Boolean(message));
    input.querySelector(".input-error").textContent = message;
  }
}

async function submit(view) {
  const values = {};
  const missing = {};
  for (const block of view.blocks.filter((b) => b.type === "input")) {
    const control = document.getElementById(`in-${block.block_id}`);
    if (!control) continue;
    const value = readControl(block.element, control);
    const blank = value === null || (Array.isArray(value) && value.length === 0);
    if (blank && !block.optional) missing[block.block_id] = "Please complete this required field.";
    values[block.block_id] = blank ? null : value;
  }
  // Slack itself refuses an empty required input before the bot sees anything.
  if (Object.keys(missing).length) return showErrors(missing);
  $("#modal-error").textContent = "";
  const answer = await post("submit", { user: ui.me, view: view.id, values }, { quiet: true });
  if (answer && answer.ok === false) $("#modal-error").textContent = answer.error;
}

// ── the page ────────────────────────────────────────────────────────────────────────────────────
function me() {
  return ui.state.people.find((p) => p.id === ui.me);
}

function renderPeople() {
  $("#people").replaceChildren(
    ...ui.state.people.map((person) =>
      el("button", {
        class: person.id === ui.me ? "me" : "",
        "data-person": person.id,
        title: person.about,
        onclick: () => {
          ui.me = person.id;
          localStorage.setItem("jitbot-sandbox-me", person.id);
          if (ui.conv === "home") post("home", { user: ui.me }, { quiet: true }); // the new person opens their own Home
          render();
        },
      }, person.real_name, " ", el("small", {}, person.role)),
    ),
  );
}

function conversations() {
  const list = [{ id: "dm", label: "jitbot (direct messages)" }];
  for (const channel of ui.state.channels) list.push({ id: channel.id, label: `# ${channel.name}` });
  if (ui.state.home_tab) list.push({ id: "home", label: "jitbot: App Home" });
  return list;
}

function messagesOf(id) {
  if (id === "dm") return ui.state.dms[ui.me] || [];
  const channel = ui.state.channels.find((c) => c.id === id);
  return channel ? channel.messages : [];
}

function renderConversations() {
  $("#conversations").replaceChildren(
    ...conversations().map((conv) => {
      const count = conv.id === "home" ? 0 : messagesOf(conv.id).length;
      const key = `${ui.me}:${conv.id}`;
      if (conv.id === ui.conv) ui.seen[key] = count;
      const unread = count > (ui.seen[key] || 0);
      return el("button", {
        class: `${conv.id === ui.conv ? "current" : ""} ${unread ? "unread" : ""}`,
        "data-conv": conv.id,
        onclick: () => { ui.conv = conv.id; if (conv.id === "home") post("home", { user: ui.me }, { quiet: true }); render(); },
      }, conv.label);
    }),
  );
}

function renderMessage(message, extra = {}) {
  const ctx = { kind: "message", message };
  const author = message.user ? userName(message.user) : "jitbot";
  const when = new Date(Number(message.ts) * 1000).toLocaleTimeString();
  return el("div", { class: `message ${extra.ephemeral ? "ephemeral" : ""}`, "data-ts": message.ts },
    el("div", {}, el("span", { class: "who" }, author === "jitbot" || message.user === ui.state.bot.id ? "jitbot" : author), " ",
      el("span", { class: "when" }, when, message.edited ? " (edited)" : "", extra.ephemeral ? " · only visible to you" : "")),
    message.blocks && message.blocks.length ? renderBlocks(message.blocks, ctx) : textObject({ type: "mrkdwn", text: message.text || "" }),
  );
}

function renderConversation() {
  const box = $("#messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  if (ui.conv === "home") {
    const home = ui.state.homes[ui.me];
    $("#conversation-title").textContent = "App Home";
    box.replaceChildren(home ? renderBlocks(home.blocks, { kind: "home", view: home })
      : el("p", { class: "muted" }, "The bot has not published an App Home for you."));
    return;
  }
  const channel = ui.state.channels.find((c) => c.id === ui.conv);
  $("#conversation-title").textContent = channel ? `# ${channel.name}` : "jitbot (direct messages with the bot)";
  const dm = `D${ui.me.slice(1)}`;
  const here = channel ? channel.id : dm;
  const items = messagesOf(ui.conv).map((m) => ({ ts: m.ts, node: renderMessage(m) }));
  for (const ephemeral of ui.state.ephemerals[ui.me] || []) {
    if (ephemeral.channel === here) items.push({ ts: ephemeral.ts, node: renderMessage(ephemeral, { ephemeral: true }) });
  }
  items.sort((a, b) => Number(a.ts) - Number(b.ts));
  box.replaceChildren(...items.map((i) => i.node));
  if (!items.length) box.append(el("p", { class: "muted" }, channel ? "No messages yet." : `Type ${ui.state.command} below to ask for access.`));
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function renderReceiver() {
  $("#receiver-url").textContent = ui.state.receiver ? `listening at ${ui.state.receiver}` : "";
  const rows = ui.state.holdings.map((h) =>
    el("tr", { class: "holding", "data-request-id": h.request_id },
      el("td", {}, h.who), el("td", {}, h.target, el("div", { class: "muted" }, `${h.system} · ${h.request_id}`)),
      el("td", {}, h.until ? new Date(h.until).toLocaleString() : "no end")),
  );
  $("#holdings tbody").replaceChildren(...rows);
  $("#no-holdings").hidden = rows.length > 0;
  $("#history").replaceChildren(
    ...ui.state.history.slice(0, 12).map((c) =>
      el("li", { class: c.action }, `${c.action === "grant" ? "granted" : "revoked"} ${c.target} for ${c.who}`,
        el("span", { class: "muted" }, ` ${new Date(c.at).toLocaleTimeString()}`))),
  );
  $("#notes").replaceChildren(...ui.state.notes.map((n) => el("div", { class: "note" }, n)));
  $("#problems").replaceChildren(
    ...ui.state.problems.map((p) => el("div", { class: "problem" }, `Slack would refuse (${p.kind}): ${p.detail}`)),
  );
}

function renderClock() {
  if (!ui.state || !ui.state.now) return;
  // The bot's clock keeps running between updates: the page adds the time since the last one.
  const now = new Date(Date.parse(ui.state.now) + (Date.now() - ui.receivedAt));
  $("#clock").textContent = now.toLocaleString();
  const minutes = Math.round(ui.state.offset_seconds / 60);
  $("#offset").textContent = minutes ? `(${minutes >= 60 ? `${(minutes / 60).toFixed(1)} h` : `${minutes} min`} ahead)` : "";
}

function render() {
  const state = ui.state;
  if (!state || !state.ready) return;
  if (!state.people.some((p) => p.id === ui.me)) ui.me = state.people[0].id;
  if (!conversations().some((c) => c.id === ui.conv)) ui.conv = "dm";
  renderPeople();
  renderConversations();
  renderConversation();
  renderReceiver();
  renderModal();
  renderClock();
  $("#composer").placeholder = `Type ${state.command}, ${state.command} FLOW or ${state.command} help, as ${me().real_name}`;
}

// ── talking to the sandbox ──────────────────────────────────────────────────────────────────────
function toast(message) {
  const box = $("#toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(ui.toastTimer);
  ui.toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
}

async function post(path, body, { quiet = false } = {}) {
  try {
    const response = await fetch(`/api/${path}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!answer.ok && !quiet) toast(answer.error);
    return answer;
  } catch (error) {
    if (!quiet) toast("The sandbox is not answering; it may be restarting.");
    return { ok: false, error: "The sandbox is not answering." };
  }
}

function connect() {
  const events = new EventSource("/api/events");
  events.addEventListener("state", (event) => {
    const state = JSON.parse(event.data);
    if (ui.instance && state.instance !== ui.instance) {
      ui.modalKey = null;
      ui.seen = {};
      toast("The sandbox restarted: this is its new state.");
    }
    ui.instance = state.instance;
    ui.state = state;
    ui.receivedAt = Date.now();
    $("#live").className = "live on";
    $("#live").textContent = "live";
    render();
  });
  events.onerror = () => {
    // Closed and reopened by hand: a browser may give up on an EventSource whose server went away.
    events.close();
    $("#live").className = "live off";
    $("#live").textContent = "reconnecting…";
    setTimeout(connect, 1000);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("#composer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("#composer").value.trim();
    if (!text) return;
    const channel = ui.conv === "dm" || ui.conv === "home" ? null : ui.conv;
    const answer = await post("command", { user: ui.me, text, channel });
    if (answer.ok) $("#composer").value = "";
  });
  for (const button of document.querySelectorAll("[data-ff]")) {
    button.addEventListener("click", () => post("fast-forward", { minutes: Number(button.dataset.ff) }));
  }
  setInterval(renderClock, 1000);
  connect();
});
