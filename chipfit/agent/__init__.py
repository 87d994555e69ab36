"""The device agent: ``chipfit agent``, a small HTTP service that runs on the edge device and measures models
with the device's own runtime (:mod:`chipfit.agent.server`, which measures in a child process,
:mod:`chipfit.agent.worker`), and its client, :class:`chipfit.agent.client.AgentRuntime`, a
:class:`~chipfit.measure.base.Runtime` that measures through it.

Importing this package imports neither the server (FastAPI, uvicorn) nor the client (httpx); import the module
you need.
"""

from __future__ import annotations
