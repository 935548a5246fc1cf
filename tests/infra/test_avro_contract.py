"""The Avro result contract: the schema, the validator, and the code's messages agree."""

from __future__ import annotations

import copy
import io
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import fastavro
import pytest

from clipsearch.contract import (
    SCHEMA_PATH,
    ContractError,
    from_avro_json,
    schema,
    to_avro_json,
    validate_message,
    validate_plain_message,
)
from clipsearch.core import messages
from clipsearch.errors import Reason
from clipsearch.model import (
    Artifact,
    ClipResult,
    Hit,
    Query,
    QueryObject,
    SourceVideo,
    Timings,
)

# Messages as the publisher would send them, in Avro's JSON encoding, written out by hand.
SUCCESS_ENCODED: dict[str, Any] = {
    "schema_version": 1,
    "status": "success",
    "query": {
        "bucket": "acme-clipsearch-queries",
        "object": "in/cat.jpg",
        "generation": "1712345678901234",
        "video_no": {"string": "VI123"},
        "prompt": {"string": "a cat on a sofa"},
        "unique_id": {"string": "u-1"},
        "event_id": "evt-1",
    },
    "clips": [
        {
            "rank": 1,
            "start_time": 12.5,
            "end_time": 18.0,
            "score": 0.91,
            "source": {
                "Source": {
                    "bucket": "mavi-resource",
                    "blob": "videos/a.mp4",
                    "uri": "gs://mavi-resource/videos/a.mp4",
                }
            },
            "artifact": {
                "Artifact": {
                    "bucket": "acme-clipsearch-results",
                    "object": "clipsearch/videos/mavi-resource/videos/a.mp4",
                    "uri": "gs://acme-clipsearch-results/clipsearch/videos/mavi-resource/videos/a.mp4",
                    "mode": "clip",
                    "size": 123456789012,
                    "reused": False,
                    "start_time": {"double": 12.0},
                    "end_time": {"double": 18.0},
                    "keyframe_snapped": {"boolean": True},
                    "poster_uri": {"string": "gs://acme-clipsearch-results/p.jpg"},
                }
            },
            "fetch_error": None,
            "fallback_reason": None,
        },
        {
            "rank": 2,
            "start_time": 3,
            "end_time": 4,
            "score": 0.5,
            "source": None,
            "artifact": None,
            "fetch_error": {"string": "source not allowed"},
            "fallback_reason": {"string": "unsupported_container"},
        },
    ],
    "error": None,
    "result_uri": "gs://acme-clipsearch-results/clipsearch/results/q/in/cat.jpg/1.json",
    "timings_ms": {"read": 1.5, "search": 800.25, "fetch": 30.0, "total": 832.0},
    "produced_at": "2026-01-02T03:04:05.678Z",
    "expires_at": {"string": "2026-02-01T03:04:05.678Z"},
}

ERROR_ENCODED: dict[str, Any] = {
    "schema_version": 1,
    "status": "error",
    "query": {
        "bucket": "acme-clipsearch-queries",
        "object": "in/no-metadata.jpg",
        "generation": "7",
        "video_no": None,
        "prompt": None,
        "unique_id": None,
        "event_id": "evt-2",
    },
    "clips": [],
    "error": {"Error": {"reason": "missing_video_no", "message": "no video_no metadata"}},
    "result_uri": "gs://acme-clipsearch-results/clipsearch/results/q/in/no-metadata.jpg/7.json",
    "timings_ms": {"read": 0.0, "search": 0.0, "fetch": 0.0, "total": 0.4},
    "produced_at": "2026-01-02T03:04:06Z",
    "expires_at": None,
}


def _with(message: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(message)
    *parents, last = path.split(".")
    node: Any = out
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return out


_DELETE = object()

INVALID = [
    pytest.param(_with(SUCCESS_ENCODED, "query.video_no", "VI123"), id="bare-union-string"),
    pytest.param(
        _with(SUCCESS_ENCODED, "clips.0.source", {"bucket": "b", "blob": "o", "uri": "gs://b/o"}),
        id="bare-union-record",
    ),
    pytest.param(_with(ERROR_ENCODED, "error", {"string": "x"}), id="wrong-union-branch"),
    pytest.param(_with(SUCCESS_ENCODED, "status", "ok"), id="unknown-enum-symbol"),
    pytest.param(_with(SUCCESS_ENCODED, "query.generation", 7), id="generation-not-string"),
    pytest.param(_with(SUCCESS_ENCODED, "clips.0.rank", "1"), id="rank-not-int"),
    pytest.param(_with(SUCCESS_ENCODED, "clips.0.score", True), id="score-bool"),
    pytest.param(_with(ERROR_ENCODED, "query.video_no", _DELETE), id="missing-defaulted-field"),
    pytest.param(_with(ERROR_ENCODED, "timings_ms.total", _DELETE), id="missing-timing"),
    pytest.param(_with(ERROR_ENCODED, "clips", None), id="clips-null"),
    pytest.param(_with(ERROR_ENCODED, "expires_at", _DELETE), id="missing-expires-at"),
    pytest.param(_with(ERROR_ENCODED, "expires_at", "2026-02-01Z"), id="bare-expires-at"),
]


@pytest.mark.parametrize("message", [SUCCESS_ENCODED, ERROR_ENCODED], ids=["success", "error"])
def test_hand_written_messages_validate(message: dict[str, Any]) -> None:
    validate_message(message)


@pytest.mark.parametrize("message", INVALID)
def test_mismatches_are_rejected(message: dict[str, Any]) -> None:
    with pytest.raises(ContractError):
        validate_message(message)


def test_fractional_int_is_rejected_although_pubsub_truncates_it() -> None:
    """Deliberately stricter than the emulator, which accepts 1.5 for an int (truncating)."""
    with pytest.raises(ContractError):
        validate_message(_with(SUCCESS_ENCODED, "clips.1.rank", 1.5))
    validate_message(_with(SUCCESS_ENCODED, "clips.1.rank", 2.0))


def test_unknown_keys_are_ignored_like_pubsub_does() -> None:
    validate_message(_with(ERROR_ENCODED, "extra", {"anything": 1}))


def test_schema_is_valid_avro_and_every_nullable_field_defaults_to_null() -> None:
    fastavro.parse_schema(schema())

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for field in node.get("fields", []):
                kind = field["type"]
                if isinstance(kind, list):
                    assert kind[0] == "null", f"{path}.{field['name']}: put null first"
                    assert "default" in field, f"{path}.{field['name']}: needs default null"
                    assert field["default"] is None
                walk(kind, f"{path}.{field['name']}")
            walk(node.get("items"), path + "[]")
            if isinstance(node.get("type"), (dict, list)):
                walk(node["type"], path)
        elif isinstance(node, list):
            for branch in node:
                walk(branch, path)

    walk(schema(), "$")


@pytest.mark.parametrize("encoded", [SUCCESS_ENCODED, ERROR_ENCODED], ids=["success", "error"])
def test_conversion_round_trips_and_matches_fastavro(encoded: dict[str, Any]) -> None:
    plain = from_avro_json(encoded)
    assert plain["query"]["video_no"] in (None, "VI123")
    assert to_avro_json(plain) == encoded
    validate_plain_message(plain)
    # An independent implementation of Avro's JSON encoding writes the same thing.
    out = io.StringIO()
    fastavro.json_writer(out, fastavro.parse_schema(schema()), [plain])
    assert json.loads(out.getvalue()) == json.loads(json.dumps(encoded))


def _query_object() -> QueryObject:
    return QueryObject(
        bucket="qb",
        name="in/cat.jpg",
        generation=42,
        size=10,
        content_type="image/jpeg",
        metadata={"video_no": "VI1", "prompt": "cat", "unique_id": "u"},
        event_id="evt",
        event_time="2026-01-01T00:00:00Z",
    )


def _code_messages() -> list[dict[str, Any]]:
    obj = _query_object()
    query = Query(obj, video_no="VI1", prompt="cat", unique_id="u", image_kind="jpeg")
    src = SourceVideo("mavi-resource", "v/a.mp4")
    clips = [
        ClipResult(1, Hit(1.0, 2.0, 0.9, src), src, Artifact("rb", "x/a.mp4", "copy", 5, True)),
        ClipResult(2, Hit(3.0, 4.0, 0.1, None), None, None, fetch_error="no source"),
    ]
    timings = Timings(1.0, 2.0, 3.0, 6.0)
    success = messages.success_message(
        query, clips, timings, "gs://rb/r.json", "2026-01-01T00:00:00.000Z", retention_days=30
    )
    error = messages.error_message(
        obj, None, Reason.MISSING_PROMPT, "no prompt", timings, "gs://rb/r.json", "2026-01-01Z"
    )
    return [success, error]


def _shape(value: Any) -> Any:
    """Keys only, recursively (one representative element per array)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def test_the_codes_messages_validate_once_encoded_as_avro_json() -> None:
    for plain in _code_messages():
        encoded = to_avro_json(json.loads(messages.encode(plain)))
        validate_message(encoded)


def test_the_codes_plain_json_is_not_what_pubsub_accepts() -> None:
    """Documents the trap: the plain body with a non-null optional value is rejected."""
    success, _ = _code_messages()
    with pytest.raises(ContractError, match="wrapped"):
        validate_message(json.loads(messages.encode(success)))


def test_schema_fields_are_exactly_the_keys_the_code_produces() -> None:
    def fields(node: Any) -> Any:
        if isinstance(node, list):
            records = [b for b in node if isinstance(b, dict)]
            return fields(records[0]) if records else None
        if isinstance(node, dict):
            if node["type"] == "record":
                return {f["name"]: fields(f["type"]) for f in node["fields"]}
            if node["type"] == "array":
                return [fields(node["items"])]
            if isinstance(node["type"], (dict, list)):
                return fields(node["type"])
        return None

    expected = fields(schema())
    success, error = _code_messages()
    assert _merge(_shape(success), _shape(error)) == expected


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _merge(a.get(k), b.get(k)) for k in a.keys() | b.keys()}
    if isinstance(a, list) and isinstance(b, list):
        return [_merge(a[0] if a else None, b[0] if b else None)] if a or b else []
    return a if a is not None else b


# --- Agreement with the official emulator, which validates schemas like the service --------

JAR_GLOB = "usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/*-all.jar"


@pytest.mark.integration
def test_validator_agrees_with_the_pubsub_emulator() -> None:
    jars = sorted(Path("/").glob(JAR_GLOB))
    if not jars or not shutil.which("java"):
        pytest.skip(reason="no java or Pub/Sub emulator jar (google-cloud-cli-pubsub-emulator)")
    import grpc  # noqa: PLC0415
    from google.api_core import exceptions as gexc  # noqa: PLC0415
    from google.pubsub_v1 import Encoding, Schema, SchemaServiceClient  # noqa: PLC0415
    from google.pubsub_v1.services.schema_service.transports import (  # noqa: PLC0415
        SchemaServiceGrpcTransport,
    )

    from clipsearch_dev.processes import pubsub_emulator  # noqa: PLC0415

    cases: list[Any] = [SUCCESS_ENCODED, ERROR_ENCODED, _with(ERROR_ENCODED, "extra", 1)]
    cases += [p.values[0] for p in INVALID]
    cases += [json.loads(messages.encode(m)) for m in _code_messages()]
    cases += [to_avro_json(json.loads(messages.encode(m))) for m in _code_messages()]
    with pubsub_emulator() as emulator:
        channel = grpc.insecure_channel(f"127.0.0.1:{emulator.port}")
        client = SchemaServiceClient(transport=SchemaServiceGrpcTransport(channel=channel))
        parent = "projects/contract-test"
        created = client.create_schema(
            parent=parent,
            schema=Schema(type_=Schema.Type.AVRO, definition=json.dumps(schema())),
            schema_id="clip-result",
        )
        verdicts: list[tuple[bool, bool, str]] = []
        for message in cases:
            try:
                client.validate_message(
                    request={
                        "parent": parent,
                        "name": created.name,
                        "message": json.dumps(message).encode(),
                        "encoding": Encoding.JSON,
                    }
                )
                emulator_ok = True
            except gexc.InvalidArgument:
                emulator_ok = False
            try:
                validate_message(message)
                ours_ok = True
            except ContractError:
                ours_ok = False
            verdicts.append((ours_ok, emulator_ok, json.dumps(message)[:200]))
        channel.close()
    disagreements = [v for v in verdicts if v[0] != v[1]]
    assert not disagreements


# --- A third-party decoder reads what we publish ------------------------------------------


def _published_bytes() -> list[bytes]:
    """Message bodies exactly as the service publishes them (service._publish)."""
    hostile = "\"'<b>é,😀\\n\u2028;"
    obj = _query_object()
    query = Query(obj, video_no=f"V{hostile}", prompt=hostile, unique_id="u", image_kind="jpeg")
    src = SourceVideo("mavi-resource", f"v/{hostile}.mp4")
    clips = [
        ClipResult(
            1,
            Hit(1.0, 2.0, 0.9, src),
            src,
            Artifact("rb", "x/a.mp4", "clip", 2**40, False, 0.5, 2.0, True, "gs://rb/p.jpg"),
        ),
        ClipResult(2, Hit(3.0, 4.0, 0.1, None), None, None, fetch_error=hostile),
    ]
    timings = Timings(1.0, 2.0, 3.0, 6.0)
    success = messages.success_message(
        query, clips, timings, "gs://rb/r.json", "2026-01-01T00:00:00Z", retention_days=2
    )
    refused = messages.error_message(
        QueryObject(
            "qb", "in/x.tiff", 9, -1, "image/tiff", {"x-goog-meta-Video_No": "V9"}, "e", ""
        ),
        None,
        Reason.UNSUPPORTED_EXTENSION,
        hostile,
        timings,
        "gs://rb/r.json",
        "2026-01-01Z",
    )
    return [messages.encode(to_avro_json(m)) for m in (*_code_messages(), success, refused)]


@pytest.mark.parametrize("wire", _published_bytes(), ids=["success", "error", "hostile", "refused"])
def test_fastavro_json_reader_decodes_what_we_publish(wire: bytes) -> None:
    """fastavro's Avro JSON reader, given only the .avsc, decodes each published body to
    exactly what our own decoder (from_avro_json, used by `clipsearch results`) returns."""
    parsed = fastavro.parse_schema(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    [record] = list(fastavro.json_reader(io.StringIO(wire.decode("utf-8")), parsed))
    assert record == from_avro_json(json.loads(wire))
    assert record["status"] in ("success", "error")


def test_fastavro_is_no_substitute_for_the_pubsub_validator() -> None:
    """Why contract.py keeps its own codec (see its docstring): fastavro's reader accepts
    bodies Pub/Sub rejects, and refuses the plain JSON our decoder passes through."""
    parsed = fastavro.parse_schema(schema())

    def read(message: Any) -> Any:
        return next(iter(fastavro.json_reader(io.StringIO(json.dumps(message)), parsed)))

    missing = copy.deepcopy(ERROR_ENCODED)
    del missing["query"]["video_no"]  # has a default; Pub/Sub still requires every field
    fractional = copy.deepcopy(SUCCESS_ENCODED)
    fractional["clips"][0]["rank"] = 1.5
    for accepted_by_fastavro in (missing, fractional):
        read(accepted_by_fastavro)
        with pytest.raises(ContractError):
            validate_message(accepted_by_fastavro)
    plain = from_avro_json(SUCCESS_ENCODED)
    assert from_avro_json(plain) == plain
    with pytest.raises(AttributeError):  # fastavro 1.13 expects the {branch: value} wrapper
        read(plain)


# --- Schema evolution: every revision Terraform has committed, and what it keeps working ----
#
# Terraform commits a changed clip_result.avsc as a new revision of the same Pub/Sub schema
# (infra/pubsub.tf). The topics set no revision range, so a message is accepted when it
# validates against ANY revision: a function still running revision N's code keeps publishing
# while revision N+1's rolls out, in either order. That only works if a revision only appends
# nullable fields with default null; each committed revision is kept in schema_revisions/.

REVISIONS = Path(__file__).resolve().parent / "schema_revisions"


def _revisions() -> list[dict[str, Any]]:
    files = sorted(REVISIONS.glob("*.avsc"), key=lambda p: int(p.stem))
    assert [int(p.stem) for p in files] == list(range(1, len(files) + 1))
    return [json.loads(p.read_text(encoding="utf-8")) for p in files]


def _appends_only(old: Any, new: Any, path: str) -> None:
    """`new` keeps every field of `old` unchanged and in place; anything added comes after,
    nullable with default null. Docs may change."""
    if isinstance(old, dict) and old.get("type") == "record":
        assert new.get("type") == "record", path
        assert new["name"] == old["name"], path
        kept, added = new["fields"][: len(old["fields"])], new["fields"][len(old["fields"]) :]
        for before, after in zip(old["fields"], kept, strict=True):
            assert after["name"] == before["name"], f"{path}: field order changed"
            _appends_only(before["type"], after["type"], f"{path}.{before['name']}")
            assert after.get("default", _DELETE) == before.get("default", _DELETE), path
        for field in added:
            where = f"{path}.{field['name']}"
            assert isinstance(field["type"], list), f"{where}: a new field must be nullable"
            assert field["type"][0] == "null", f"{where}: null first"
            assert "default" in field, f"{where}: needs default null"
            assert field["default"] is None, f"{where}: needs default null"
    elif isinstance(old, dict):
        assert isinstance(new, dict), path
        assert set(old) - {"doc"} == set(new) - {"doc"}, path
        for key in set(old) - {"doc", "fields"}:
            if isinstance(old[key], (dict, list)):
                _appends_only(old[key], new[key], f"{path}.{key}")
            else:
                assert new[key] == old[key], f"{path}.{key}"
    elif isinstance(old, list):
        assert isinstance(new, list), path
        assert len(new) == len(old), f"{path}: union branches changed"
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _appends_only(a, b, f"{path}[{index}]")
    else:
        assert new == old, path


def test_the_schema_is_the_latest_committed_revision() -> None:
    """Changing clip_result.avsc means adding schema_revisions/<N+1>.avsc with it."""
    assert _revisions()[-1] == schema()


def test_each_revision_only_appends_nullable_fields() -> None:
    revisions = _revisions()
    for number, (old, new) in enumerate(itertools.pairwise(revisions), start=2):
        _appends_only(old, new, f"revision {number}")
    assert revisions[-1]["fields"][-1]["name"] == "expires_at"  # revision 2


def _drop_new_fields(plain: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """What a publisher of an older revision sends: only that revision's top-level fields."""
    names = {f["name"] for f in old["fields"]}
    return {k: v for k, v in plain.items() if k in names}


def test_fastavro_resolves_old_and_new_revisions_both_ways() -> None:
    """Avro schema resolution by a third-party implementation: revision 2 readers see
    expires_at = null in revision 1 data, and revision 1 readers skip it in revision 2 data."""
    old, new = (fastavro.parse_schema(r) for r in _revisions()[-2:])
    for plain in _code_messages():
        old_plain = _drop_new_fields(plain, _revisions()[-2])
        written = io.BytesIO()
        fastavro.schemaless_writer(written, old, old_plain)
        written.seek(0)
        read = fastavro.schemaless_reader(written, old, new)
        assert read == {**old_plain, "expires_at": None}
        written = io.BytesIO()
        fastavro.schemaless_writer(written, new, plain)
        written.seek(0)
        assert fastavro.schemaless_reader(written, new, old) == old_plain


@pytest.mark.integration
def test_a_topic_accepts_old_and_new_revisions_during_a_rollout() -> None:
    """On the official emulator, a schema with revision 1 and the current revision committed
    on top (what Terraform does), and a topic without a revision range (infra/pubsub.tf):
    revision-1 messages (no expires_at) and current ones both publish. The same topic limited
    to the latest revision refuses the old ones: the open range is what keeps them working."""
    jars = sorted(Path("/").glob(JAR_GLOB))
    if not jars or not shutil.which("java"):
        pytest.skip(reason="no java or Pub/Sub emulator jar (google-cloud-cli-pubsub-emulator)")
    import grpc  # noqa: PLC0415
    from google.api_core import exceptions as gexc  # noqa: PLC0415
    from google.pubsub_v1 import Encoding, PublisherClient, Schema, SchemaServiceClient  # noqa: PLC0415
    from google.pubsub_v1.services.publisher.transports import (  # noqa: PLC0415
        PublisherGrpcTransport,
    )
    from google.pubsub_v1.services.schema_service.transports import (  # noqa: PLC0415
        SchemaServiceGrpcTransport,
    )

    from clipsearch_dev.processes import pubsub_emulator  # noqa: PLC0415

    revisions = _revisions()
    current = [to_avro_json(json.loads(messages.encode(m))) for m in _code_messages()]
    old = [_drop_new_fields(m, revisions[-2]) for m in current]
    with pubsub_emulator() as emulator:
        channel = grpc.insecure_channel(f"127.0.0.1:{emulator.port}")
        schemas = SchemaServiceClient(transport=SchemaServiceGrpcTransport(channel=channel))
        publisher = PublisherClient(transport=PublisherGrpcTransport(channel=channel))
        created = schemas.create_schema(
            parent="projects/rollout-test",
            schema=Schema(type_=Schema.Type.AVRO, definition=json.dumps(revisions[0])),
            schema_id="clip-result",
        )
        for revision in revisions[1:]:
            latest = schemas.commit_schema(
                request={
                    "name": created.name,
                    "schema": Schema(type_=Schema.Type.AVRO, definition=json.dumps(revision)),
                }
            )
        listed = list(schemas.list_schema_revisions(request={"name": created.name}))
        assert len(listed) == len(revisions)

        def accepted(topic: str, body: dict[str, Any]) -> bool:
            try:
                publisher.publish(
                    request={"topic": topic, "messages": [{"data": json.dumps(body).encode()}]}
                )
            except gexc.InvalidArgument:
                return False
            return True

        open_range = publisher.create_topic(
            request={
                "name": "projects/rollout-test/topics/results",
                "schema_settings": {"schema": created.name, "encoding": Encoding.JSON},
            }
        ).name
        latest_only = publisher.create_topic(
            request={
                "name": "projects/rollout-test/topics/latest-only",
                "schema_settings": {
                    "schema": created.name,
                    "encoding": Encoding.JSON,
                    "first_revision_id": latest.revision_id,
                },
            }
        ).name
        verdicts = {
            "open, current": [accepted(open_range, m) for m in current],
            "open, revision 1": [accepted(open_range, m) for m in old],
            "latest only, current": [accepted(latest_only, m) for m in current],
            "latest only, revision 1": [accepted(latest_only, m) for m in old],
        }
        channel.close()
    assert verdicts == {
        "open, current": [True, True],
        "open, revision 1": [True, True],
        "latest only, current": [True, True],
        "latest only, revision 1": [False, False],
    }
