"""API key ids (proxy/keys.py)."""

from __future__ import annotations

from proxy.keys import new_key_id


def test_api_key_ids_never_look_like_a_command_line_option():
    ids = [new_key_id() for _ in range(5000)]  # about 78 of them would start with "-" if left to chance
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids) and all(len(i) == 20 for i in ids)
