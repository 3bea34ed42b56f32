"""A log event of plain values is checked for secrets all at once (the fast path of every log line):
whatever the event holds, the result is exactly what scrubbing each key and value one by one gives,
for secrets raw or in any escaped form a renderer or repr() would print, next to NUL characters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.secrets import SecretRegistry, escaped_forms
from tests.properties.conftest import property_settings

NASTY = ['pa"ss\\wörd\nline2', "it's-both\"-S5", "key\U0001f511-E6", "ctl\x07-C7", "new\nline-N4", "xoxb-123-abc"]
secrets_ = st.lists(
    st.one_of(st.sampled_from(NASTY), st.text(st.characters(blacklist_characters="*$"), min_size=4, max_size=12)),
    min_size=1,
    max_size=3,
)


@st.composite
def event_and_registry(draw) -> tuple[dict, SecretRegistry, list[str]]:
    values = draw(secrets_)
    registry = SecretRegistry()
    for value in values:
        registry.register(value)
    # Text that may hold a secret in any of its forms, cut into pieces, or a NUL, among ordinary text.
    pieces = st.sampled_from(sorted({form for value in values for form in escaped_forms(value)}) + ["\x00", "\n"])
    texts = st.lists(st.one_of(st.text(max_size=8), pieces), max_size=4).map("".join)
    plain = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts)
    event = draw(st.dictionaries(texts, plain, max_size=8))
    return event, registry, values


@property_settings()
@given(event_and_registry())
def test_a_flat_event_scrubbed_at_once_equals_each_value_scrubbed_alone(drawn):
    event, registry, _ = drawn
    expected = {registry.scrub(k): registry.scrub(v) if isinstance(v, str) else v for k, v in event.items()}
    scrubbed = registry.scrub_value(event)
    assert scrubbed == expected
    assert [type(v) for v in scrubbed.values()] == [type(v) for v in expected.values()]
    assert scrubbed is not event


@property_settings()
@given(event_and_registry())
def test_no_registered_secret_survives_in_a_flat_event(drawn):
    event, registry, values = drawn
    scrubbed = registry.scrub_value(event)
    texts = [item for pair in scrubbed.items() for item in pair if isinstance(item, str)]
    # No secret here holds a '*', so none can be rebuilt around a redaction.
    assert not [value for value in values for text in texts if value in text]
