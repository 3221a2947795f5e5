"""TF-Serving's gRPC API on the console process, next to REST: `PredictionService/Predict`
and `GetModelMetadata`, `ModelService/GetModelStatus`, and gRPC health. The official protos
(`tensorflow-serving-api`), so a stock TF-Serving client works unchanged.

Same model name, version (the training step of the live weights), snapshot and limits as
the REST route (console/predictor.py checks both). Bad requests get the status code that
says why: INVALID_ARGUMENT (a wrong input: name, dtype, shape, values), NOT_FOUND (another
model, or a version not served), RESOURCE_EXHAUSTED (a message over 1 MiB, from gRPC
itself), UNAVAILABLE (no weights yet), never UNKNOWN or INTERNAL for anything a client sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from console.predictor import BadInput, NotReady, Predictor

log = logging.getLogger(__name__)

#: a request's size limit, as REST's
MAX_MESSAGE_BYTES = 1 << 20
#: the output's name: what the SavedModels this run exports call it (Keras' export)
OUTPUT = "output_0"
SIGNATURE = "serving_default"


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, predictor: Predictor, model_name: str,
                 record_latency: Callable[[float], None],
                 describe: Callable[[], dict[str, Any]] | None = None) -> None:
        self.predictor, self.model_name = predictor, model_name
        self.record_latency = record_latency
        self.describe = describe

    def _check_spec(self, spec: Any) -> None:
        if spec.name != self.model_name:
            raise _Refused(grpc.StatusCode.NOT_FOUND,
                           f"no model {spec.name!r}; this server serves {self.model_name!r}")
        if spec.signature_name not in ("", SIGNATURE):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT,
                           f"no signature {spec.signature_name!r}; use {SIGNATURE!r}")
        served = self.predictor.latest_version
        if spec.HasField("version") and spec.version.value != served:
            raise _Refused(grpc.StatusCode.NOT_FOUND,
                           f"version {spec.version.value} is not served; the live version "
                           f"is {served} (the training step)")

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        started = time.perf_counter()
        try:
            version, out = self._predict(request)
        except _Refused as err:
            context.abort(err.code, str(err))
        reply = predict_pb2.PredictResponse()
        reply.model_spec.name = self.model_name
        reply.model_spec.version.value = version
        reply.model_spec.signature_name = SIGNATURE
        reply.outputs[OUTPUT].CopyFrom(tf.make_tensor_proto(out))
        if self.describe is not None:
            facts = self.describe()
            context.set_trailing_metadata(tuple(
                (f"x-model-{key.replace('_', '-')}", str(facts[key]))
                for key in ("step", "age_s", "created_ms") if key in facts))
        self.record_latency(time.perf_counter() - started)
        return reply

    def _predict(self, request: Any) -> tuple[int, np.ndarray]:
        self._check_spec(request.model_spec)
        field = self.predictor.schema.features
        if set(request.inputs) != {field}:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT,
                           f"inputs must be exactly {{{field!r}}}, got "
                           f"{sorted(request.inputs)[:5]}")
        if request.output_filter and set(request.output_filter) != {OUTPUT}:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"the only output is {OUTPUT!r}")
        tensor = request.inputs[field]
        wanted = self.predictor.schema.dtype[field].base
        if tensor.dtype != tf.as_dtype(wanted).as_datatype_enum:
            # TF-Serving's rule: no casts, a float64 or an int32 for a float32 input is
            # refused (a cast could lose what the client meant, silently)
            given = tf.dtypes.DType(tensor.dtype).name if tensor.dtype in _DTYPES else str(
                tensor.dtype)
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {field!r} must be {tf.as_dtype(wanted).name}, got {given}")
        try:
            limit = self.predictor.max_batch * int(np.prod(self.predictor.schema.feature_shape))
            return self.predictor.predict_array(
                self.predictor.checked(_ndarray(tensor, limit)))
        except BadInput as err:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        except NotReady as err:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, str(err)) from None

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        try:
            self._check_spec(request.model_spec)
            if list(request.metadata_field) != ["signature_def"]:
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT,
                               'metadata_field must be ["signature_def"], the only one served')
        except _Refused as err:
            context.abort(err.code, str(err))
        reply = get_model_metadata_pb2.GetModelMetadataResponse()
        reply.model_spec.name = self.model_name
        reply.model_spec.version.value = self.predictor.latest_version
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signatures.signature_def[SIGNATURE].CopyFrom(self._signature())
        reply.metadata["signature_def"].Pack(signatures)
        return reply

    def _signature(self) -> Any:
        schema = self.predictor.schema
        signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
        feature = signature.inputs[schema.features]
        feature.name = f"{SIGNATURE}_{schema.features}:0"
        feature.dtype = tf.as_dtype(schema.dtype[schema.features].base).as_datatype_enum
        feature.tensor_shape.CopyFrom(_shape([-1, *schema.feature_shape]))
        output = signature.outputs[OUTPUT]
        output.name = "StatefulPartitionedCall:0"
        output.dtype = types_pb2.DT_FLOAT
        output.tensor_shape.CopyFrom(_shape([-1, -1]))
        return signature


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, predictor: Predictor, model_name: str) -> None:
        self.predictor, self.model_name = predictor, model_name

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if request.model_spec.name != self.model_name:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"no model {request.model_spec.name!r}; this server serves "
                          f"{self.model_name!r}")
        version = self.predictor.latest_version
        state = get_model_status_pb2.ModelVersionStatus
        reply = get_model_status_pb2.GetModelStatusResponse()
        status = reply.model_version_status.add()
        status.version = version
        status.state = state.AVAILABLE if version else state.LOADING
        return reply


#: what a request body that does not parse becomes
NOT_A_MESSAGE = object()


def _handlers(service: str, methods: dict[str, tuple[Callable[..., Any], Any]]) -> Any:
    def parse(message: Any) -> Callable[[bytes], Any]:
        def parsed(data: bytes) -> Any:
            try:
                return message.FromString(data)
            except DecodeError:
                return NOT_A_MESSAGE  # not None: gRPC answers a None with INTERNAL
        return parsed

    def refusing(method: Callable[..., Any], name: str) -> Callable[..., Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            if request is NOT_A_MESSAGE:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the body is not a {name}")
            return method(request, context)
        return call

    return grpc.method_handlers_generic_handler(service, {
        name: grpc.unary_unary_rpc_method_handler(
            refusing(method, message.DESCRIPTOR.name), request_deserializer=parse(message),
            response_serializer=lambda reply: reply.SerializeToString())
        for name, (method, message) in methods.items()})


#: the DataType enum values tf.dtypes.DType can name
_DTYPES = frozenset(t.as_datatype_enum for t in (
    tf.float16, tf.float32, tf.float64, tf.bfloat16, tf.int8, tf.int16, tf.int32, tf.int64,
    tf.uint8, tf.uint16, tf.uint32, tf.uint64, tf.bool, tf.string, tf.complex64,
    tf.complex128))


def _ndarray(tensor: Any, max_values: int) -> np.ndarray:
    """A TensorProto as numpy; a malformed one is the client's error, not ours. Its shape is
    checked first: a few bytes may declare billions of values (filled from one)."""
    dims = [d.size for d in tensor.tensor_shape.dim]
    if any(d < 0 for d in dims) or int(np.prod(dims, dtype=np.float64)) > max_values:
        raise BadInput(f"the input's shape {dims} is not a batch of at most {max_values} "
                       "values in all")
    try:
        return tf.make_ndarray(tensor)
    except Exception as err:  # noqa: BLE001 - any parse failure of client bytes is theirs
        raise BadInput(f"the input is not a valid TensorProto: {err}") from None


def _shape(dims: list[int]) -> Any:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])


class GrpcServer:
    """The gRPC server of the console process: its own thread pool, the REST limits."""

    def __init__(self, predictor: Predictor, model_name: str, host: str, port: int,
                 record_latency: Callable[[float], None], workers: int = 8,
                 describe: Callable[[], dict[str, Any]] | None = None) -> None:
        """`describe`: what a replica says of the version it serves (its step and age),
        sent with every Predict answer as trailing metadata `x-model-<key>`."""
        self._server = grpc.server(futures.ThreadPoolExecutor(workers, "console-grpc"),
                                   options=[("grpc.max_receive_message_length",
                                             MAX_MESSAGE_BYTES)])
        predictions = PredictionService(predictor, model_name, record_latency, describe)
        models = ModelService(predictor, model_name)
        # the generated add_*_to_server would answer bytes that are no message with INTERNAL
        # (its parse fails before any servicer runs): these parse to NOT_A_MESSAGE, refused
        self._server.add_generic_rpc_handlers((
            _handlers("tensorflow.serving.PredictionService", {
                "Predict": (predictions.Predict, predict_pb2.PredictRequest),
                "GetModelMetadata": (predictions.GetModelMetadata,
                                     get_model_metadata_pb2.GetModelMetadataRequest)}),
            _handlers("tensorflow.serving.ModelService", {
                "GetModelStatus": (models.GetModelStatus,
                                   get_model_status_pb2.GetModelStatusRequest)})))
        checks = health.HealthServicer()
        checks.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(checks, self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            msg = f"the console's gRPC port {host}:{port} could not be bound (in use?)"
            raise OSError(msg)
        self.address = f"{host}:{self.port}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=1.0)
