"""The JSON Schemas `dimee schema` writes, generated from the pydantic models of the messages: each with
`$schema` (draft 2020-12, what pydantic writes) and an `$id` naming the message and its version, every field
described.

Whether a schema takes fields it does not list follows who reads the message: the prediction schema is the
reader's (`client.ReadPrediction`): a field added in a later release of version 1 (optional, so compatible)
validates. The others are what dimee's own roles take, and they refuse unknown fields (docs/streaming.md).

A field's description is its model's (`Field(description=...)`) where it has one, else the one below: by the
message (or nested object) and field, else by the field's name, which means the same in every message.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dimee.streaming.client import VERSION, ReadPrediction
from dimee.streaming.messages import SCHEMAS

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_id(name: str) -> str:
    return f"urn:dimee:message:{name}:v{VERSION}"


MESSAGES: dict[str, str] = {  # what a message (or nested object) is, for readers of its schema
    "sample": "A text to classify, as a producer writes it to PREFIX.samples (keyed by its id).",
    "routed": "A sample with the router's decision (tier, pool), on the chosen tier's topic PREFIX.TIER; an "
              "escalated sample carries the tiers it passed (hops) and where to resume.",
    "prediction": "A tier worker's answer to one sample, on PREFIX.predictions (keyed by its id). Readers must "
                  "accept fields this schema does not list: later releases of this version may add optional ones.",
    "dead-letter": "A record a stage could not process, with the reason, on PREFIX.dead-letter.",
    "CostBreakdown": "What answering cost, in the method's cost units (docs/method.md).",
    "Timings": "When the sample passed each stage, in seconds since 1970 (each stage's own clock).",
    "RoutingPolicy": "The routing policy the router served (docs/policies.md).",
    "Tier": "A tier of the deployment: mobile, edge or cloud.",
}

FIELDS: dict[str, str] = {  # a field name that means the same wherever it appears
    "v": "The message version: fields are only added within one, as optional; anything else is a new v.",
    "id": "The sample id, also the record's key: a prediction, audit or dead letter names its sample by it.",
    "text": "The text to classify (at most max_text_chars characters are read).",
    "text_pair": "The second text of a pair task, if any.",
    "label": "The true class, where the producer knows it (for accuracy; never used to answer).",
    "meta": "The producer's own data, carried through to the prediction unchanged (at most 16 KiB of JSON).",
    "label_pred": "The predicted class.",
    "confidence": "The answering exit's confidence in label_pred, in [0, 1].",
    "exit_layer": "The layer whose exit answered (1 is the first).",
    "layers_run": "Encoder layers run for this sample, over every tier it passed.",
    "cost": "What it cost, in the method's cost units.",
    "worker": "The worker that wrote it (its instance id).",
    "pool": "The pool (difficulty) the router assigned: an index into the deployment's tiers.",
    "at": "When it was written, in seconds since 1970.",
    "processing": "Computing: the cost per layer run on each tier, summed.",
    "offload": "Sending the sample into each tier it entered.",
    "cloud": "The cloud platform's charge.",
    "total": "processing + offload + cloud.",
    "produced_at": "When the producer wrote the sample, in seconds since 1970.",
    "routed_at": "When the router routed it, in seconds since 1970.",
    "started_at": "When the answering worker started on it, in seconds since 1970.",
    "finished_at": "When the answering worker finished it, in seconds since 1970.",
}

OWN_FIELDS: dict[tuple[str, str], str] = {  # a field whose meaning depends on the message
    ("routed", "tier"): "The tier the sample is routed to (the topic it is on).",
    ("routed", "distances"): "The sample's distance to each pool's centroid (null: none for that pool).",
    ("routed", "centroid_version"): "The version of the centroids the router decided with.",
    ("routed", "router"): "The router that routed it (its instance id).",
    ("routed", "hops"): "The tiers the sample passed before this one, in order (escalation).",
    ("routed", "start_layer"): "The layer to resume from: 0 runs the model from its first layer.",
    ("prediction", "tier"): "The tier that answered.",
    ("prediction", "correct"): "Whether label_pred is the label, where the sample had one.",
    ("prediction", "model"): "The model that answered: calibration's model id, tier and layers, e.g. dimee:edge:1-4.",
    ("prediction", "timings"): "When the sample passed each stage.",
    ("audit", "tier"): "The lower tier whose answer the full model checked.",
    ("audit", "label_pred"): "That tier's answer.",
    ("audit", "full_pred"): "The full model's answer.",
    ("audit", "agree"): "Whether the two answers agree.",
    ("audit", "cost"): "What the check cost: the text to the cloud and the whole model there.",
    ("audit", "digest"): "The sample's content digest, as on the audit copy.",
    ("feedback", "routed_pool"): "The pool the router assigned.",
    ("feedback", "observed_pool"): "The pool the sample's exit shows it belongs to.",
    ("dead-letter", "stage"): "The stage that could not process the record.",
    ("dead-letter", "topic"): "The record's topic.",
    ("dead-letter", "partition"): "The record's partition.",
    ("dead-letter", "offset"): "The record's offset.",
    ("dead-letter", "key"): "The record's key (up to 256 characters), if it had one.",
    ("dead-letter", "error"): "Why it could not be processed.",
    ("dead-letter", "payload"): "The record's value (its first 64 KiB): text, or base64 where payload_base64.",
    ("dead-letter", "payload_base64"): "Whether payload is base64 (the value was not UTF-8).",
    ("dead-letter", "payload_truncated"): "Whether the payload was cut to 64 KiB.",
    ("dead-letter", "payload_bytes"): "The whole value's length in bytes, where it was cut.",
    ("dead-letter", "payload_sha256"): "The whole value's SHA-256, where it was cut.",
    ("AuditOf", "tier"): "The lower tier whose answer the full model checks.",
    ("AuditOf", "label_pred"): "That tier's answer.",
    ("AuditOf", "confidence"): "That tier's confidence in it.",
    ("AuditOf", "exit_layer"): "The layer whose exit gave it.",
    ("Control", "offset"): "The offset the workers add to the exit thresholds below the cloud.",
    ("Control", "version"): "How many audits have moved it.",
    ("Hop", "tier"): "The tier passed.",
    ("Hop", "layers_run"): "The layers run there.",
    ("Hop", "cost"): "What that tier cost.",
    ("RoutingPolicy", "name"): "The policy's name, e.g. DIMEE-F.",
    ("RoutingPolicy", "router"): "How the start tier is picked: centroid, learned, or a fixed tier.",
    ("RoutingPolicy", "adaptive"): "Whether the routed pool's centroid moves with each sample (DIMEE-D).",
    ("RoutingPolicy", "feedback"): "Whether the observed pool's centroid moves with the workers' feedback.",
    ("RoutingPolicy", "escalation"): "What a tier does with a sample not confident enough at its cap: off, "
                                     "recompute or continue.",
    ("RoutingPolicy", "thresholds"): "The exit thresholds: calibrated (one alpha), full-model (no early exit) "
                                     "or tuned per tier.",
}


def _describe(owner: str, node: dict[str, Any]) -> None:
    if owner in MESSAGES:  # over a docstring, which may speak of the Python class
        node["description"] = MESSAGES[owner]
    for field, spec in node.get("properties", {}).items():
        text = OWN_FIELDS.get((owner, field), FIELDS.get(field))
        if "description" not in spec and text is not None:
            spec["description"] = text


def json_schema(name: str, model: type[BaseModel]) -> dict[str, Any]:
    body = model.model_json_schema()
    for owner, node in body.get("$defs", {}).items():
        _describe(owner, node)
    _describe(name, body)
    return {"$schema": DIALECT, "$id": schema_id(name), **body}


READ_AS: dict[str, type[BaseModel]] = {"prediction": ReadPrediction}  # messages whose schema is their reader's


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every message's JSON Schema, by the name `dimee schema` gives it (NAME.schema.json)."""
    return {name: json_schema(name, READ_AS.get(name, model)) for name, model in SCHEMAS.items()}
