"""The hand-written Example encoder must match protobuf's deterministic serialization byte for byte."""

import tensorflow as tf

from tfrs_selreg.data import example_codec as codec


def _proto(features):
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(
        deterministic=True)


def test_matches_protobuf_for_every_feature_kind():
    cases = {
        "user_id": (codec.bytes_feature([b"u1"]),
                    tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"u1"]))),
        "history": (codec.bytes_feature([b"", b"i\xc3\xa9", b"x" * 300]),
                    tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"", b"i\xc3\xa9", b"x" * 300]))),
        "empty_bytes": (codec.bytes_feature([]), tf.train.Feature(bytes_list=tf.train.BytesList())),
        "ints": (codec.int64_feature([0, 1, 127, 128, 300, 2**40, -1, -(2**63)]),
                 tf.train.Feature(int64_list=tf.train.Int64List(
                     value=[0, 1, 127, 128, 300, 2**40, -1, -(2**63)]))),
        "empty_ints": (codec.int64_feature([]), tf.train.Feature(int64_list=tf.train.Int64List())),
        "floats": (codec.float_feature([0.0, 1.5, -2.25, 3.4e38, 1e-7]),
                   tf.train.Feature(float_list=tf.train.FloatList(value=[0.0, 1.5, -2.25, 3.4e38, 1e-7]))),
        "empty_floats": (codec.float_feature([]), tf.train.Feature(float_list=tf.train.FloatList())),
        "a_first_key": (codec.int64_feature([5]), tf.train.Feature(int64_list=tf.train.Int64List(value=[5]))),
    }
    ours = codec.encode_example({k: v[0] for k, v in cases.items()})
    assert ours == _proto({k: v[1] for k, v in cases.items()})
    assert ours == _proto(dict(reversed(list({k: v[1] for k, v in cases.items()}.items()))))


def test_empty_example():
    assert codec.encode_example({}) == _proto({})


def test_string_feature_equals_bytes_feature():
    values = ["", "318", "Amélie", "318"]
    assert codec.string_feature(values) == codec.bytes_feature([v.encode("utf-8") for v in values])


def test_tfrecord_bytes_equal_beam_s_tfrecord_writer():
    import io
    import random

    from apache_beam.io.tfrecordio import _TFRecordUtil

    from beam_pipelines.prepare.write import tfrecord_bytes

    rng = random.Random(1)
    records = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400))) for _ in range(200)]
    f = io.BytesIO()
    for record in records:
        _TFRecordUtil.write_record(f, record)
    assert tfrecord_bytes(records) == f.getvalue() and tfrecord_bytes([]) == b""


def test_entry_prefix_gives_the_entry():
    for values in ([], [0], [5, 2**40, -1]):
        packed = b"".join(codec.varint(v) for v in values)
        assert (codec.entry_prefix("timestamp", codec.INT64_LIST, len(packed)) + packed
                == codec.entry("timestamp", codec.int64_feature(values)))
    for values in ([], ["", "i1", "x" * 300]):
        slots = b"".join(codec.string_list_entry(v) for v in values)
        assert (codec.entry_prefix("history", codec.BYTES_LIST, len(slots)) + slots
                == codec.entry("history", codec.string_feature(values)))
