"""The closed sets of values that settings and options take. Kept free of heavy imports, so the command line
validates its arguments with these very types before torch is loaded."""

from typing import Literal

Pooling = Literal["mean", "cls"]  # exit-head pooling
LossWeighting = Literal["mean", "pabee"]  # joint loss over the exits
Objective = Literal["reward", "accuracy-budget"]  # how calibration picks α*
EmbeddingKind = Literal["layer", "raw"]  # routing embedding: embedding-layer output or raw word embeddings
Distance = Literal["euclidean", "cosine"]  # router distance to a centroid
EscalationMode = Literal["off", "recompute", "continue"]  # what a tier does with a sample unsure at its cap
RouterKind = Literal["centroid", "learned", "mobile", "edge", "cloud"]  # how the router picks a start tier
Guarantee = Literal["auto", "exactly-once", "at-least-once"]  # delivery of each stage's outputs and offsets
KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]  # how clients talk to Kafka
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
ThresholdKind = Literal["calibrated", "full-model", "tuned"]  # α* everywhere, no early exit, or tuned per tier
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["console", "json"]  # a log line readable by people, or one JSON object
Split = Literal["train", "calibration", "test"]
