"""Decoding what a store holds: a damaged record is a CorruptRecordError (a 503), never a crash."""

from __future__ import annotations

import pytest

from serversession import CorruptRecordError, StoreError
from serversession.core.codec import SessionMeta, check_data, decode_meta, decode_value, encode_meta


def test_meta_round_trips() -> None:
    meta = SessionMeta(created_at=1.5, last_seen_at=2.25, user="ann", user_agent="ua", ip="::1", persistent=True)
    assert decode_meta(encode_meta(meta)) == meta
    limited = meta.with_changes(idle_limit=-10.0, ends_at=1_800_000_300.125)
    assert decode_meta(encode_meta(limited)) == limited
    assert decode_meta({"c": "1", "s": "1", "l": "", "e": ""}) == SessionMeta(1.0, 1.0)  # no expiry set
    assert not {"l", "e"} & set(encode_meta(meta))  # most sessions: no empty fields in the store


@pytest.mark.parametrize(
    "fields",
    [
        [],
        None,
        {},
        {"c": "1"},
        {"c": "x", "s": "1"},
        {"c": "nan", "s": "1"},  # a NaN deadline would never expire
        {"c": "1", "s": "inf"},
        {"c": "1", "s": "1", "u": ["ann"]},
        {"c": 1, "s": "1"},
        {"c": "1", "s": "1", "l": "nan"},  # an app's idle limit that would never end the session
        {"c": "1", "s": "1", "e": "inf"},
        {"c": "1", "s": "1", "e": "soon"},
    ],
)
def test_corrupt_meta_is_a_store_error(fields: object) -> None:
    with pytest.raises(CorruptRecordError) as info:
        decode_meta(fields)  # type: ignore[arg-type]
    assert isinstance(info.value, StoreError)


@pytest.mark.parametrize("text", ["{", "", "nope", None, 5])
def test_a_value_that_is_not_json_text_is_a_store_error(text: object) -> None:
    with pytest.raises(CorruptRecordError):
        decode_value(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [[], "x", None, {"k": 1}, {"k": None}])
def test_stored_data_must_map_keys_to_encoded_text(data: object) -> None:
    with pytest.raises(CorruptRecordError):
        check_data(data)
    assert check_data({"k": "1"}) == {"k": "1"}
