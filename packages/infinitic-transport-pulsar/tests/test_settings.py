import pytest
from pydantic import ValidationError

from infinitic.transport_pulsar import PulsarSettings


def test_camel_case_configuration_as_in_infinitic_yaml() -> None:
    settings = PulsarSettings.model_validate(
        {
            "brokerServiceUrl": "pulsar+ssl://broker:6651",
            "webServiceUrl": "https://broker:8443/",
            "tenant": "acme",
            "namespace": "prod",
            "tlsAllowInsecureConnection": False,
            "tlsEnableHostnameVerification": True,
            "tlsTrustCertsFilePath": "/etc/ca.pem",
            "authentication": {"token": "secret-token"},
            "producer": {"maxPendingMessages": 500, "batchingEnabled": True},
            "consumer": {"receiverQueueSize": 50, "retryMode": "nack"},
            "policies": {"retentionTimeInMinutes": 60, "topicPartitions": 3},
        }
    )
    assert settings.web_service_url == "https://broker:8443"
    assert settings.tls_enable_hostname_verification is True
    assert settings.authentication.token is not None
    assert settings.authentication.token.get_secret_value() == "secret-token"
    assert "secret-token" not in repr(settings)
    assert settings.producer.max_pending_messages == 500
    assert settings.consumer.retry_mode == "nack"
    assert settings.policies.topic_partitions == 3
    assert settings.is_pulsar_lite is False


def test_snake_case_works_too_and_flavor_is_detected() -> None:
    settings = PulsarSettings(broker_service_url="pulsar://localhost:6650")
    assert settings.is_pulsar_lite is True  # no admin URL: the dev broker
    assert PulsarSettings(broker_flavor="pulsar").is_pulsar_lite is False
    assert PulsarSettings(
        web_service_url="http://x:8080", broker_flavor="pulsar-lite"
    ).is_pulsar_lite


@pytest.mark.parametrize(
    "data",
    [
        {"brokerServiceUrl": "http://wrong"},
        {"webServiceUrl": "pulsar://wrong"},
        {"unknownKey": 1},
        {"consumer": {"receiverQueueSize": 0}},
        {"brokerFlavor": "kafka"},
    ],
)
def test_invalid_settings_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PulsarSettings.model_validate(data)


def test_embedded_broker_options_from_configuration() -> None:
    from infinitic.transport import TransportContext
    from infinitic.transport_pulsar._config import (
        EmbeddedBrokerTransport,
        pulsar_lite_transport_from_config,
        pulsar_transport_from_config,
    )

    worker = TransportContext(role="worker", path="transport.pulsarLite")
    lite = pulsar_lite_transport_from_config(
        {"port": 16999, "healConnectionResets": False, "namespace": "dev"}, worker
    )
    assert isinstance(lite, EmbeddedBrokerTransport)
    assert lite.broker._heal is False
    assert lite.broker._requested_port == 16999
    assert lite.settings.namespace == "dev"
    nested = pulsar_transport_from_config({"embedded": True}, worker)
    assert isinstance(nested, EmbeddedBrokerTransport)
    assert nested.broker._heal is True  # on by default
