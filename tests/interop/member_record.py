"""swarmnode member records in Python, built from docs/protocol.md ("Member records") alone.

A member record is a CBOR map inside a libp2p signed envelope (RFC 0002). py-libp2p 0.8.1's own envelope code is
tied to its peer records, so the envelope's protobuf is written and read by hand here, exactly as the doc gives it:
`Envelope { public_key = 1, payload_type = 2, payload = 3, signature = 5 }`, the signature over the varint-framed
domain, payload type and payload. The interop harness (py_peer.py) seals the py peer's records with this module and
opens the swarmnode records it hears with it, so any disagreement with the doc shows up as a failed case.
"""

import io
import unicodedata

import cbor2
from libp2p.crypto.keys import PrivateKey
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.peer.id import ID as PeerID

TOPIC = "/swarmnode/members/1"
DOMAIN = b"swarmnode-member-record"
PAYLOAD_TYPE = b"/swarmnode/member-record/1"
MAX_RECORD_BYTES = 8192
MAX_NAME = 64

# The envelope's protobuf field numbers.
PUBLIC_KEY, TYPE, PAYLOAD, SIGNATURE = 1, 2, 3, 5


class RecordError(ValueError):
    """Bytes that are not a member record a receiver may take."""


def varint(n: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint at `at` and the offset after it."""
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise RecordError("truncated or overlong varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def field(number: int, value: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(value)) + value


def signed_bytes(payload_type: bytes, payload: bytes) -> bytes:
    """What RFC 0002 signs: each of domain, payload type and payload prefixed by its varint length."""
    return b"".join(varint(len(part)) + part for part in (DOMAIN, payload_type, payload))


def seal(private_key: PrivateKey, record: dict) -> bytes:
    """The bytes a node publishes: `record` as CBOR, in an envelope signed with `private_key`."""
    payload = cbor2.dumps(record)
    signature = private_key.sign(signed_bytes(PAYLOAD_TYPE, payload))
    envelope = (field(PUBLIC_KEY, private_key.get_public_key().serialize()) + field(TYPE, PAYLOAD_TYPE)
                + field(PAYLOAD, payload) + field(SIGNATURE, signature))
    if len(envelope) > MAX_RECORD_BYTES:
        raise RecordError(f"a signed record is at most {MAX_RECORD_BYTES} bytes, this one has {len(envelope)}")
    return envelope


def parse_envelope(data: bytes) -> dict[int, bytes]:
    """The envelope's length-delimited fields by number; varint fields are skipped, other wire types refused."""
    fields: dict[int, bytes] = {}
    at = 0
    while at < len(data):
        key, at = read_varint(data, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, at = read_varint(data, at)
        elif wire_type == 2:
            length, at = read_varint(data, at)
            if at + length > len(data):
                raise RecordError(f"field {number} runs past the end")
            fields[number] = data[at:at + length]
            at += length
        else:
            raise RecordError(f"field {number} has wire type {wire_type}")
    return fields


def check_text(what: str, text, minimum: int = 1, maximum: int = MAX_NAME) -> None:
    if not isinstance(text, str) or not minimum <= len(text.encode()) <= maximum:
        raise RecordError(f"{what} must be text of {minimum} to {maximum} bytes: {text!r}")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise RecordError(f"{what} holds control or formatting characters: {text!r}")


def check_unsigned(what: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RecordError(f"{what} must be an unsigned integer: {value!r}")


def open_record(data: bytes) -> tuple[PeerID, dict]:
    """The author (the signing key's peer id) and the decoded record, after every check docs/protocol.md lists for
    the envelope and the fields the harness relies on (v, incarnation, seq, name, weight, tags, services)."""
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"{len(data)} bytes, more than {MAX_RECORD_BYTES}")
    fields = parse_envelope(data)
    missing = [n for n in (PUBLIC_KEY, TYPE, PAYLOAD, SIGNATURE) if n not in fields]
    if missing:
        raise RecordError(f"envelope fields {missing} missing")
    if fields[TYPE] != PAYLOAD_TYPE:
        raise RecordError(f"payload type {fields[TYPE]!r}")
    key = deserialize_public_key(fields[PUBLIC_KEY])
    if not key.verify(signed_bytes(fields[TYPE], fields[PAYLOAD]), fields[SIGNATURE]):
        raise RecordError("the signature does not verify")
    stream = io.BytesIO(fields[PAYLOAD])
    record = cbor2.CBORDecoder(stream).decode()
    if stream.tell() != len(fields[PAYLOAD]):
        raise RecordError("bytes after the CBOR map")
    if not isinstance(record, dict):
        raise RecordError(f"the payload is a {type(record).__name__}, not a map")
    if record.get("v") != 1:
        raise RecordError(f"version {record.get('v')!r}")
    check_unsigned("incarnation", record.get("incarnation"))
    check_unsigned("seq", record.get("seq"))
    check_text("name", record.get("name"))
    weight = record.get("weight")
    if not isinstance(weight, float) or not 0 <= weight <= 1e6:
        raise RecordError(f"weight must be a float from 0 to 1000000: {weight!r}")
    tags = record.get("tags", {})
    if not isinstance(tags, dict):
        raise RecordError(f"tags must be a map: {tags!r}")
    for name, value in tags.items():
        check_text("tag key", name)
        check_text("tag value", value, 0, 256)
    services = record.get("services", [])
    if not isinstance(services, list):
        raise RecordError(f"services must be an array: {services!r}")
    for service in services:
        check_text("service id", service.get("id"))
        check_text("service name", service.get("name"))
        if service.get("status") not in ("passing", "warning", "critical"):
            raise RecordError(f"service status {service.get('status')!r}")
    return PeerID.from_pubkey(key), record
