"""The incremental SSE and NDJSON decoders, fed recorded streams split at every byte boundary."""

from __future__ import annotations

import pytest

from adapters.openai_compat import OpenAIStreamParser
from proxy.errors import StreamCut
from proxy.sse import FrameTooLarge, NDJSONDecoder, SSEDecoder, SSEEvent

# An OpenAI stream as recorded on the wire, with a comment line, CRLF line ends, a multi-line data
# field and multi-byte UTF-8 (é, 日本, an emoji) so that splits fall inside characters too.
RECORDED = (
    b": keep-alive\r\n\r\n"
    b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\r\n\r\n'
    b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac"}}]}\n\n'
    b'event: message\ndata: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":" \xf0\x9f\x99\x82"}}]}\r\r'
    b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
    b"data: [DONE]\n\n"
)


def decode_all(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    return events + decoder.close()


def test_whole_stream_decodes():
    events = decode_all([RECORDED])
    assert len(events) == 6
    assert events[-1].data == "[DONE]"
    assert "café 日本" in events[1].data and "🙂" in events[2].data


@pytest.mark.parametrize("cut", range(1, len(RECORDED)))
def test_split_at_every_byte_decodes_the_same(cut):
    assert decode_all([RECORDED[:cut], RECORDED[cut:]]) == decode_all([RECORDED])


def test_one_byte_at_a_time():
    assert decode_all([RECORDED[i:i + 1] for i in range(len(RECORDED))]) == decode_all([RECORDED])


def test_multiline_data_event_and_id():
    events = decode_all([b"id: 7\nevent: error\ndata: line one\ndata: line two\n\n"])
    assert events == [SSEEvent("line one\nline two", "error", "7")]


def test_event_limit_is_enforced():
    decoder = SSEDecoder(max_event_bytes=1024)
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"data: " + b"x" * 2048)


def test_openai_parser_over_every_split_gives_the_same_deltas():
    def deltas(pieces):
        decoder, parser, out = SSEDecoder(), OpenAIStreamParser(), []
        for piece in pieces:
            for event in decoder.feed(piece):
                out.extend(parser.feed(event))
        for event in decoder.close():
            out.extend(parser.feed(event))
        out.extend(parser.finish())
        return out

    reference = deltas([RECORDED])
    assert "".join(d.content or "" for d in reference) == "café 日本 🙂"
    assert [d.usage.total_tokens for d in reference if d.usage] == [5]
    for cut in range(1, len(RECORDED)):
        assert deltas([RECORDED[:cut], RECORDED[cut:]]) == reference


def test_openai_parser_without_done_is_a_cut_stream():
    parser = OpenAIStreamParser()
    for event in decode_all([RECORDED.replace(b"data: [DONE]\n\n", b"")]):
        parser.feed(event)
    with pytest.raises(StreamCut):
        parser.finish()


@pytest.mark.parametrize("cut", range(1, 40))
def test_ndjson_split(cut):
    data = b'{"a":1}\n{"b":"\xc3\xa9"}\n{"c":3}'
    decoder = NDJSONDecoder()
    lines = decoder.feed(data[:cut]) + decoder.feed(data[cut:]) + decoder.close()
    assert lines == [b'{"a":1}', b'{"b":"\xc3\xa9"}', b'{"c":3}']
