"""Traces as users have them: compressed, with the timestamp forms of each Azure release, out of
order, with absurd lengths (issue 27, item 5)."""
import bz2
import gzip
import lzma

import pytest

from serving.config.errors import ConfigError
from tests.tuner.workload import fixtures
from tuner.workload import formats
from tuner.workload.formats.base import MAX_TIMESTAMP, MAX_TOKENS
from tuner.workload.stats import describe, trace_stats
from tuner.workload.trace import Tally, load_trace, requests

COMPRESSORS = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


@pytest.mark.parametrize("codec", list(COMPRESSORS))
@pytest.mark.parametrize("name", list(fixtures.ALL))
def test_every_format_is_read_through_every_stdlib_compression(tmp_path, name, codec):
    plain = fixtures.ALL[name](tmp_path)
    packed = tmp_path / f"packed-{name}"          # no suffix: told by the magic bytes alone
    packed.write_bytes(COMPRESSORS[codec](plain.read_bytes()))
    assert formats.detect(packed)[0].name == name
    tally = Tally()
    got = [(t.request.prompt_len, t.request.output_len, t.timestamp) for t in requests(packed, tally=tally)]
    assert got == [(t.request.prompt_len, t.request.output_len, t.timestamp) for t in requests(plain)]
    assert f"{codec}-compressed" in tally.describe()


def test_a_broken_compressed_trace_is_one_line(tmp_path):
    whole = gzip.compress(b'{"prompt": "a", "output_len": 2}\n' * 20000)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ConfigError, match="gzip data must be whole") as err:
        load_trace(cut)
    assert str(cut) in str(err.value) and "\n" not in str(err.value)
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"\x1f\x8b" + b"\x00" * 30)
    with pytest.raises(ConfigError, match="gzip") as err:
        load_trace(junk)
    assert "\n" not in str(err.value)


def test_a_compressed_binary_file_is_still_refused_as_binary(tmp_path):
    path = tmp_path / "bin.gz"
    path.write_bytes(gzip.compress(bytes(range(256))))
    with pytest.raises(ConfigError, match="binary data"):
        load_trace(path)


def _azure(tmp_path, stamps):
    path = tmp_path / "az.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(f"{s},10,5\n" for s in stamps))
    return path


def test_azure_2024_timestamps_with_an_offset_are_read(tmp_path):
    path = _azure(tmp_path, ["2024-05-10 00:00:00.331306+00:00", "2024-05-10 00:00:01.5+00:00",
                             "2024-05-10 02:00:02.000001+02:00", "2024-05-10 00:00:03Z"])
    t = [i.timestamp for i in requests(path)]
    assert [x - t[0] for x in t] == pytest.approx([0, 1.168694, 1.668695, 2.668694])


def test_azure_2023_seven_digit_fractions_keep_the_seventh_digit(tmp_path):
    # datetime keeps 6 digits (these two would be equal); a double at 1.7e9 s resolves 0.24 us
    path = _azure(tmp_path, ["2023-11-16 18:15:46.6805900", "2023-11-16 18:15:46.6805909"])
    a, b = (i.timestamp for i in requests(path))
    assert b - a == pytest.approx(9e-7, abs=3e-7)


@pytest.mark.parametrize("stamp", ["2024-05-10 00:00:00.33x", "2024-05-10 00:00:00.5+25:00", "2024-13-10 00:00:00",
                                   "1969-12-31 23:59:59"])
def test_malformed_or_pre_epoch_azure_timestamps_are_refused(tmp_path, stamp):
    with pytest.raises(ConfigError, match=r"line 2, field 'TIMESTAMP'") as err:
        load_trace(_azure(tmp_path, [stamp]))
    assert "\n" not in str(err.value)


NEGATIVE = [
    ("neg.jsonl", '{"prompt": "a", "output_len": 2, "timestamp": 1}\n{"prompt": "b", "output_len": 2, "timestamp": -3}\n',
     r"line 2, field 'timestamp'.*>= 0.*-3"),
    ("neg_moon.jsonl", '{"timestamp": -250, "input_length": 5, "output_length": 1}\n', r"line 1, field 'timestamp'"),
    ("neg.csv", "Timestamp,Model,Request tokens,Response tokens\n-1,m,3,2\n", r"line 2, field 'Timestamp'"),
    ("far.csv", f"Timestamp,Model,Request tokens,Response tokens\n{MAX_TIMESTAMP * 10:.0f},m,3,2\n",
     r"line 2, field 'Timestamp'.*<= "),
]


@pytest.mark.parametrize("name,text,message", NEGATIVE)
def test_negative_and_absurd_timestamps_are_refused_naming_file_record_and_field(tmp_path, name, text, message):
    assert str(tmp_path / name) in fixtures.refused(tmp_path / name, text, message)


HUGE = [
    ("big_moon.jsonl", '{"timestamp": 0, "input_length": 1000000000000, "output_length": 3}\n', "input_length"),
    ("big_moon.jsonl", '{"timestamp": 0, "input_length": 3, "output_length": 1000000000000}\n', "output_length"),
    ("big.csv", "Timestamp,Model,Request tokens,Response tokens\n1,m,1e300,2\n", "Request tokens"),
    ("big.csv", "Timestamp,Model,Request tokens,Response tokens\n1,m,2,1e300\n", "Response tokens"),
    ("big_az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00,99999999999,5\n", "ContextTokens"),
    ("big.jsonl", '{"prompt": "a", "output_len": 100000000000}\n', "output_len"),
    ("big_vllm.jsonl", '{"prompt": "a", "output_tokens": 100000000000}\n', "output_tokens"),
    ("big_alpaca.jsonl", '{"instruction": "a", "output_len": 100000000000}\n', "output_len"),
]


@pytest.mark.parametrize("name,text,field", HUGE)
def test_lengths_are_bounded_in_every_format_and_the_bound_is_named(tmp_path, name, text, field):
    fixtures.refused(tmp_path / name, text, rf"field '{field}'.*<= {MAX_TOKENS:,}")


def test_trace_stats_says_when_it_sorted_the_timestamps(tmp_path):
    path = fixtures.lines(tmp_path / "unsorted.jsonl", [{"prompt": "a", "output_len": 2, "timestamp": t}
                                                        for t in (5, 1, 3, 2)])
    stats = trace_stats(path)
    assert list(stats.times) == [4, 0, 2, 1]
    assert "timestamps out of order (2 records earlier than the one before): sorted" in describe(stats, bars=False)


def test_lzma_alone_is_read_and_compressions_the_stdlib_cannot_stream_are_named(tmp_path):
    plain = fixtures.mooncake(tmp_path)
    alone = tmp_path / "alone"
    alone.write_bytes(lzma.compress(plain.read_bytes(), format=lzma.FORMAT_ALONE))
    assert [t.request.prompt_len for t in requests(alone)] == [700, 600, 30]
    for magic, what in ((b"\x28\xb5\x2f\xfd", "zstd"), (b"PK\x03\x04", "zip archive")):
        path = tmp_path / what.replace(" ", "_")
        path.write_bytes(magic + b"\x00" * 40)
        with pytest.raises(ConfigError, match=f"a plain, gzip, bz2 or xz trace must be given, found .*{what}") as err:
            load_trace(path)
        assert "\n" not in str(err.value)
