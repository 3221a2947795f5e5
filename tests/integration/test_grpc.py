"""TF-Serving's gRPC API on a live 2-rank run, called with the stock `tensorflow_serving.apis`
client: predict, metadata and status; a version that moves with training; the same answer as
REST for the same snapshot; and the right status code for every kind of bad request (never
UNKNOWN or INTERNAL), the server answering afterwards."""

import json
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.integration.harness import live_run, wait_until

pytestmark = pytest.mark.integration
INPUTS = 16  # the MLP template of write_config


def request(x, name="model", input_name="x", version=None) -> predict_pb2.PredictRequest:
    r = predict_pb2.PredictRequest()
    r.model_spec.name = name
    if version is not None:
        r.model_spec.version.value = version
    r.inputs[input_name].CopyFrom(tf.make_tensor_proto(x))
    return r


def rest_predict(url: str, x: np.ndarray) -> dict:
    body = json.dumps({"instances": x.tolist()}).encode()
    req = urllib.request.Request(f"{url}v1/models/model:predict", body,
                                 {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as reply:
        return json.loads(reply.read())


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code()


def test_a_stock_tf_serving_client_against_a_live_run(broker, topic, tmp_path):
    with live_run(broker, topic, tmp_path) as (url, _, layout):
        address = layout.console_grpc.read_text().strip()
        channel = grpc.insecure_channel(address)
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        x = np.random.default_rng(0).normal(size=(3, INPUTS)).astype(np.float32)

        def answered():
            try:
                return predict(request(x), timeout=10)
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE, err  # no weights yet
                return None

        first = wait_until(answered, 60, "weights to predict with")
        assert first.model_spec.name == "model"
        assert tf.make_ndarray(first.outputs["output_0"]).shape == (3, 1)
        v1 = first.model_spec.version.value
        assert v1 > 0, "the version is the training step"
        wait_until(lambda: predict(request(x), timeout=10).model_spec.version.value > v1, 60,
                   "the version to move with training")

        # REST and gRPC answer alike for the same snapshot (retried until both saw one)
        def same_snapshot():
            rest = rest_predict(url, x)
            got = predict(request(x), timeout=10)
            if str(got.model_spec.version.value) != rest["model_version"]:
                return None
            return rest, got

        rest, got = wait_until(same_snapshot, 30, "REST and gRPC on one snapshot")
        np.testing.assert_allclose(tf.make_ndarray(got.outputs["output_0"]),
                                   np.array(rest["predictions"]), rtol=1e-6)

        meta = get_model_metadata_pb2.GetModelMetadataRequest()
        meta.model_spec.name = "model"
        meta.metadata_field.append("signature_def")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        reply = stub.GetModelMetadata(meta, timeout=10)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        reply.metadata["signature_def"].Unpack(signatures)
        feature = signatures.signature_def["serving_default"].inputs["x"]
        assert [d.size for d in feature.tensor_shape.dim] == [-1, INPUTS]
        assert feature.dtype == tf.float32.as_datatype_enum

        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "model"
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            status_request, timeout=10)
        assert status.model_version_status[0].state == \
            get_model_status_pb2.ModelVersionStatus.AVAILABLE
        status_request.model_spec.name = "other"
        assert code_of(lambda: model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            status_request, timeout=10)) == grpc.StatusCode.NOT_FOUND

        invalid, not_found = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
        malformed = request(x)
        malformed.inputs["x"].tensor_content = b"\x00" * 7  # not 3 x 16 floats
        bad_meta = get_model_metadata_pb2.GetModelMetadataRequest()
        bad_meta.model_spec.name = "model"
        bad_meta.metadata_field.append("other")
        cases = {
            "another model": (lambda: predict(request(x, name="other"), timeout=10), not_found),
            "a version not served": (lambda: predict(request(x, version=1), timeout=10),
                                     not_found),
            "another input name": (lambda: predict(request(x, input_name="z"), timeout=10),
                                   invalid),
            "a wrong shape": (lambda: predict(request(x[:, :5]), timeout=10), invalid),
            "strings": (lambda: predict(request(np.array([["a"] * INPUTS])), timeout=10),
                        invalid),
            "NaN": (lambda: predict(request(np.full((1, INPUTS), np.nan, np.float32)),
                                    timeout=10), invalid),
            "too many instances": (lambda: predict(
                request(np.zeros((1025, INPUTS), np.float32)), timeout=10), invalid),
            "a malformed TensorProto": (lambda: predict(malformed, timeout=10), invalid),
            "over 1 MiB": (lambda: predict(request(np.zeros((20000, INPUTS), np.float32)),
                                           timeout=10), grpc.StatusCode.RESOURCE_EXHAUSTED),
            "another metadata field": (lambda: stub.GetModelMetadata(bad_meta, timeout=10),
                                       invalid),
            "bytes that are no message": (lambda: channel.unary_unary(
                "/tensorflow.serving.PredictionService/Predict")(b"\xff\xff\xff", timeout=10),
                invalid),
        }
        codes = {name: code_of(call) for name, (call, _) in cases.items()}
        assert codes == {name: code for name, (_, code) in cases.items()}
        assert predict(request(x), timeout=10).model_spec.version.value > 0, "still answers"
        channel.close()
