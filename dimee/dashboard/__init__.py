"""`dimee dashboard`: a live web page of the running stream. `live` folds predictions, dead letters and the
router's centroids into one snapshot (pure, no I/O); `follow` feeds it from Kafka and the state store on a
background thread; `server` serves the page, its scripts and the snapshots as server-sent events."""
