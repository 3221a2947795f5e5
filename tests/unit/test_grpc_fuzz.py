"""Property-based fuzzing of the console's TF-Serving gRPC API, on a real gRPC server in this
process: arbitrary bytes to every method and malformed TensorProtos (any dtype, shape and
content) never get UNKNOWN or INTERNAL, and the server answers a good request afterwards.
(tests/integration/test_grpc.py has each error code against a live run.)"""

from __future__ import annotations

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from console.grpc_service import GrpcServer
from console.predictor import Predictor
from streams.schema import Schema

SCHEMA = Schema.from_fields([("id", "<i8"), ("x", "<f4", (3,)), ("y", "<f4")],
                            features="x", label="y", key="id")
METHODS = ["/tensorflow.serving.PredictionService/Predict",
           "/tensorflow.serving.PredictionService/GetModelMetadata",
           "/tensorflow.serving.ModelService/GetModelStatus"]
#: what a client may be told; UNKNOWN and INTERNAL would be the server failing
CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
DTYPES = [v.number for v in types_pb2.DataType.DESCRIPTOR.values]


@pytest.fixture(scope="module")
def channel():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    predictor = Predictor(model, SCHEMA, max_batch=8)
    predictor.publish(1, model.get_weights())
    server = GrpcServer(predictor, "mlp", "127.0.0.1", 0, lambda _seconds: None)
    with grpc.insecure_channel(server.address) as open_channel:
        yield open_channel
    server.stop()


def outcome(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def still_answers(channel) -> None:
    good = predict_pb2.PredictRequest()
    good.model_spec.name = "mlp"
    good.inputs["x"].CopyFrom(tf.make_tensor_proto(np.zeros((2, 3), np.float32)))
    reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(good, timeout=10)
    assert tf.make_ndarray(reply.outputs["output_0"]).shape == (2, 2)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(METHODS), body=st.binary(max_size=300))
def test_arbitrary_bytes_to_any_method(channel, method, body):
    code = outcome(lambda: channel.unary_unary(method)(body, timeout=10))
    assert code in CLIENT_ERRORS | {grpc.StatusCode.OK}, code


tensors = st.builds(
    lambda dtype, dims, content, floats: tensor_pb2.TensorProto(
        dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]),
        tensor_content=content, float_val=floats),
    st.sampled_from(DTYPES), st.lists(st.integers(-2, 10**9), max_size=4),
    st.binary(max_size=200), st.lists(st.floats(width=32), max_size=10))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tensor=tensors, name=st.sampled_from(["x", "y", ""]))
def test_malformed_tensor_protos(channel, tensor, name):
    bad = predict_pb2.PredictRequest()
    bad.model_spec.name = "mlp"
    bad.inputs[name].CopyFrom(tensor)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    code = outcome(lambda: stub.Predict(bad, timeout=10))
    assert code in CLIENT_ERRORS | {grpc.StatusCode.OK}, code


def test_it_answers_after_the_fuzzing(channel):
    still_answers(channel)


def test_a_tiny_message_declaring_billions_of_values_is_refused_before_any_allocation(
        channel):
    huge = predict_pb2.PredictRequest()
    huge.model_spec.name = "mlp"
    huge.inputs["x"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, float_val=[1.0], tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=10**9),
                 tensor_shape_pb2.TensorShapeProto.Dim(size=3)])))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    assert outcome(lambda: stub.Predict(huge, timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.float16])
def test_another_dtype_than_the_inputs_is_refused_not_cast(channel, dtype):
    """TF-Serving's rule: a float32 input takes float32 tensors only."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mlp"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 3), dtype)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predict(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be float32" in refused.value.details()


def test_a_replica_says_the_step_and_age_of_what_it_serves():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    predictor = Predictor(model, SCHEMA, max_batch=8)
    predictor.publish(5, model.get_weights())
    facts = {"version": 5, "step": 120, "age_s": 0.25, "created_ms": 1000}
    server = GrpcServer(predictor, "mlp", "127.0.0.1", 0, lambda _seconds: None,
                        describe=lambda: facts)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mlp"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 3), np.float32)))
    try:
        with grpc.insecure_channel(server.address) as open_channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(open_channel)
            reply, call = stub.Predict.with_call(request, timeout=10)
    finally:
        server.stop()
    assert reply.model_spec.version.value == 5
    assert dict(call.trailing_metadata()) == {"x-model-step": "120", "x-model-age-s": "0.25",
                                              "x-model-created-ms": "1000"}
