"""Katib early stopping that never stops a trial already above an absolute bar (`medianstop-floor`).

`rule` is the pure decision (no gRPC, imported by the replay harness); `service` serves it to Katib.
"""
