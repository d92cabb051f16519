"""The check that keeps anything but flat arrays of numbers out of embedding answers (proxy/backends.py)."""

import msgspec
import pytest

from proxy.backends import _is_number_array


@pytest.mark.parametrize("raw", [b"[1,2.5,-3e-2,4E+1]", b" [ 0.1 , -0.2 ]\n", b"[]", b"[0]"])
def test_arrays_of_numbers_pass(raw):
    msgspec.json.decode(raw)  # valid JSON, as the adapters' decoders guarantee
    assert _is_number_array(msgspec.Raw(raw))


@pytest.mark.parametrize("raw", [b'[1,"2"]', b"[1,[2]]", b"[[1,2]]", b'[1,{"a":2}]', b"[true]", b"[false]",
                                 b"[null]", b'{"a":[1]}', b'"[1]"', b"1", b"null", b"[NaN]", b"[-Infinity]"])
def test_anything_else_fails(raw):
    assert not _is_number_array(msgspec.Raw(raw))


def test_decoded_lists():
    assert _is_number_array([1, 2.5]) and not _is_number_array([1, True]) and not _is_number_array([1, "2"])
