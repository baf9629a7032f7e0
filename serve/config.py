"""The serving section of a config: how the HTTP application and its student replicas run.

:class:`ServeConfig` is the ``serve:`` section of a pipeline config (so a run directory's
``config.yaml`` carries it) and what ``mathdistill serve --config FILE`` reads. It is turned into
Ray Serve's arguments in exactly one place, :meth:`ServeConfig.student_deployment_options` /
:meth:`ServeConfig.gateway_deployment_options`; nothing else reads these fields for Serve.

Importable without Ray (pydantic only).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from distill.configbase import StrictModel
from distill.sandbox.config import SandboxConfig

__all__ = ["AutoscalingSettings", "ServeConfig", "MIB"]

MIB = 1024 * 1024


class AutoscalingSettings(StrictModel):
    """Replica bounds and target load when ``replicas: auto`` (Serve's ``autoscaling_config``)."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas of each student.")
    max_replicas: int = Field(2, ge=1, description="Most replicas of each student.")
    target_ongoing_requests: float = Field(
        16.0, gt=0, description="Requests in flight per replica the autoscaler aims for.")

    @model_validator(mode="after")
    def _bounds(self) -> "AutoscalingSettings":
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) < min_replicas "
                             f"({self.min_replicas})")
        return self


class ServeConfig(StrictModel):
    """Serving trained students over HTTP (Ray Serve): addresses, replicas, batching, limits."""

    host: str = Field("127.0.0.1", description="Address the HTTP proxy listens on "
                      "(0.0.0.0 to accept other machines).")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    route_prefix: str = Field("/", description="Prefix of every route (e.g. /math).")
    replicas: int | Literal["auto"] = Field(
        1, description="Replicas of each student: a number, or 'auto' (autoscaling between "
        "autoscaling.min_replicas and autoscaling.max_replicas).")
    autoscaling: AutoscalingSettings = Field(default_factory=AutoscalingSettings,
                                             description="Used when replicas is 'auto'.")
    max_ongoing_requests: int = Field(
        64, ge=1, description="Questions one student replica holds at once (must be >= "
        "max_batch_size, or batches never fill).")
    max_queued_requests: int = Field(
        512, ge=1, description="Questions waiting for a replica; past it the server answers "
        "503 with Retry-After.")
    max_batch_size: int = Field(32, ge=1, le=1024, description="Questions decoded together "
                                "by one replica (@serve.batch); 1 turns batching off.")
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=10, description="Longest wait for a "
                                        "batch to fill before decoding what has arrived.")
    num_cpus: float = Field(1.0, gt=0, description="CPUs per student replica (also sizes its "
                            "sandbox pool).")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per student replica.")
    request_timeout_s: float = Field(60.0, gt=0, description="A request not answered by then "
                                     "gets 504.")
    max_question_chars: int = Field(4096, ge=1, description="Longer questions are refused (400).")
    max_batch_questions: int = Field(256, ge=1, description="Most questions in one "
                                     "/v1/solve/batch request.")
    max_samples: int = Field(16, ge=1, le=64, description="Most samples per question "
                             "(num_samples, n).")
    max_body_bytes: int = Field(MIB, ge=1024, description="Largest request body (413 past it).")
    sandbox: SandboxConfig | None = Field(
        None, description="Limits for program students' programs; None: the run's own "
        "sandbox section.")

    @model_validator(mode="after")
    def _batches_can_fill(self) -> "ServeConfig":
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= "
                             f"max_batch_size ({self.max_batch_size}), or batches never fill")
        if not self.route_prefix.startswith("/"):
            raise ValueError(f"route_prefix must start with '/' (got {self.route_prefix!r})")
        return self

    def url(self) -> str:
        """Where clients reach the application."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}{self.route_prefix.rstrip('/')}"

    def http_options(self) -> dict[str, Any]:
        """``serve.start(http_options=...)``: the proxy's address."""
        return {"host": self.host, "port": self.port}

    def student_deployment_options(self, name: str) -> dict[str, Any]:
        """``Deployment.options(...)`` of one student's deployment."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            actor["num_gpus"] = self.num_gpus
        options: dict[str, Any] = {
            "name": name,
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            # a replica that stopped answering is replaced (health checks run off the batch loop)
            "health_check_period_s": 2.0,
            "health_check_timeout_s": 30.0,
            "graceful_shutdown_timeout_s": 10.0,
        }
        if self.replicas == "auto":
            options["autoscaling_config"] = self.autoscaling.model_dump()
        else:
            options["num_replicas"] = self.replicas
        return options

    def most_replicas(self) -> int:
        """Replicas of each student at most (the fixed number, or the autoscaling maximum)."""
        return self.autoscaling.max_replicas if self.replicas == "auto" else self.replicas

    def forwarding_limits(self) -> dict[str, int]:
        """The gateway's :class:`serve.forward.Forwarder` limits for one student model.

        A call carries at most one batch (``max_batch_size`` questions: batching off sends every
        question alone, up to ``max_ongoing_requests`` calls per replica). With batching, one
        call per replica: a replica decodes one batch at a time, and the questions that arrive
        meanwhile leave together when it returns (a second call in flight would be decoded as a
        batch of the one or two questions it caught). With autoscaling, at least
        ``target_ongoing_requests`` calls per replica, so that the autoscaler sees load above
        its target while questions wait at the gateway.
        Questions admitted (waiting or in flight) before 503: every replica's
        ``max_ongoing_requests`` plus ``max_queued_requests``."""
        per_replica = 1 if self.max_batch_size > 1 else self.max_ongoing_requests
        if self.replicas == "auto":
            per_replica = max(per_replica, math.ceil(self.autoscaling.target_ongoing_requests))
        replicas = max(1, self.most_replicas())
        return {
            "max_questions_per_call": self.max_batch_size,
            "max_calls_in_flight": replicas * per_replica,
            "max_admitted": replicas * self.max_ongoing_requests + self.max_queued_requests,
        }

    def gateway_deployment_options(self) -> dict[str, Any]:
        """``Deployment.options(...)`` of the HTTP ingress (it only parses and forwards)."""
        return {
            "name": "gateway",
            "ray_actor_options": {"num_cpus": 0},
            # the ingress holds every request in flight while the students work; admission is
            # decided by its forwarders (forwarding_limits: 503 in the API's shape, with
            # Retry-After), so the proxy's own queue in front of the ingress (a plain-text 503)
            # is kept out of the way
            "max_ongoing_requests": max(1000, 2 * self.max_queued_requests),
            "max_queued_requests": max(10_000, 8 * self.max_queued_requests),
            "graceful_shutdown_timeout_s": 10.0,
        }
