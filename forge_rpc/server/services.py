"""Every forge service this server exposes, and where the ones not implemented yet are planned."""

from __future__ import annotations

from forge.analytics.v1 import analytics_pb2
from forge.auth.v1 import auth_pb2
from forge.chat.v1 import chat_pb2
from forge.models.v1 import models_pb2
from forge.rag.v1 import rag_pb2
from forge.routing.v1 import routing_pb2
from forge.training.v1 import training_pb2
from google.protobuf.descriptor import ServiceDescriptor

__all__ = ["PLANNED_IN", "SERVICES"]

SERVICES: dict[str, ServiceDescriptor] = {
    d.full_name: d
    for d in (
        chat_pb2.DESCRIPTOR.services_by_name["ChatService"],
        models_pb2.DESCRIPTOR.services_by_name["ModelsService"],
        rag_pb2.DESCRIPTOR.services_by_name["RagService"],
        training_pb2.DESCRIPTOR.services_by_name["TrainingService"],
        analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"],
        routing_pb2.DESCRIPTOR.services_by_name["RoutingService"],
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
    )
}

# Named in UNIMPLEMENTED answers so a caller knows the RPC is designed, not forgotten.
PLANNED_IN = {
    "forge.models.v1.ModelsService": "the model repository arrives with durable state, issue #4",
    "forge.rag.v1.RagService": "RAG arrives with durable state, issue #4",
    "forge.analytics.v1.AnalyticsService": "analytics arrive with the usage ledger, issue #4",
    "forge.routing.v1.RoutingService": "routing arrives with issue #5",
    "forge.auth.v1.AuthService": "authentication arrives with issue #5",
    "forge.training.v1.TrainingService": "training jobs arrive with issue #6",
}
