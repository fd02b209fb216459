"""The C++ client's log lines, as the pipe's reader turns them into Python records."""

from __future__ import annotations

import logging

import pulsar

from infinitic.transport_pulsar._client_log import cpp_level, parse_line


def test_the_client_level_lets_through_what_the_python_level_does() -> None:
    assert cpp_level(logging.DEBUG) == pulsar.LoggerLevel.Debug
    assert cpp_level(logging.INFO) == pulsar.LoggerLevel.Info
    assert cpp_level(logging.WARNING) == pulsar.LoggerLevel.Warn
    assert cpp_level(logging.ERROR) == pulsar.LoggerLevel.Error
    assert cpp_level(logging.NOTSET) == pulsar.LoggerLevel.Debug
    assert cpp_level(15) == pulsar.LoggerLevel.Info  # between DEBUG and INFO: INFO and above


def test_a_line_keeps_its_level_message_place_and_thread() -> None:
    line = (
        "2026-11-29 22:10:02.624 WARN  [139824992343744] ClientConnection:485 | "
        "[<none> -> pulsar://127.0.0.1:1] Failed to establish connection: Connection refused"
    )
    level, message = parse_line(line)
    assert level == logging.WARNING
    assert message == (
        "[<none> -> pulsar://127.0.0.1:1] Failed to establish connection: Connection refused "
        "(ClientConnection:485, thread 139824992343744)"
    )
    assert parse_line("2026-11-29 22:10:02.624 INFO  [1] ClientImpl:802 | closing")[0] == 20
    assert parse_line("2026-11-29 22:10:02.624 DEBUG [1] ConsumerImpl:9 | x")[0] == 10
    assert parse_line("2026-11-29 22:10:02.624 ERROR [1] ClientImpl:275 | x")[0] == 40


def test_a_line_of_another_shape_is_a_warning_as_it_is() -> None:
    assert parse_line("the rest of a message on two lines") == (
        logging.WARNING,
        "the rest of a message on two lines",
    )


def test_the_timer_race_of_a_ready_handler_is_not_a_warning() -> None:
    line = (
        "2026-11-29 22:10:11.406 WARN  [139825229973184] HandlerBase:67 | "
        "Cancel the pending reconnection due to the start timeout"
    )
    assert parse_line(line)[0] == logging.INFO
