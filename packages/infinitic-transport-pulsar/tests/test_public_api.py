import infinitic.transport_pulsar as package


def test_public_names_are_pinned() -> None:
    assert package.__all__ == [
        "EmbeddedPulsarLite",
        "PulsarAdminError",
        "PulsarAuthentication",
        "PulsarConsumerSettings",
        "PulsarPolicies",
        "PulsarProducerSettings",
        "PulsarSettings",
        "PulsarTransport",
        "PulsarTransportError",
        "escape_name",
        "unescape_name",
    ]
    for name in package.__all__:
        assert getattr(package, name) is not None


def test_pulsar_lite_is_imported_only_by_the_embedded_broker() -> None:
    import pathlib

    src = pathlib.Path(package.__file__).parent
    users = [p.name for p in src.glob("*.py") if "import pulsar_lite" in p.read_text()]
    assert users == ["_embedded.py"]
