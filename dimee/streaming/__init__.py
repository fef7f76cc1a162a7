"""The machinery every stream role runs on: messages and their validation, the broker behind `transport`, the stage
loop, settings, health, metrics, the process supervisor and the Python client of the predictions topic."""
