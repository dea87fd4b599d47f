"""Helpers for tests that answer AWS calls with botocore's Stubber instead of an emulator."""

from __future__ import annotations

import boto3

from inventory.aws.connection import AwsConnection


def client(service: str):
    """A real botocore client that never needs credentials or a network (a Stubber answers)."""
    return boto3.client(
        service,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class StubbedSession:
    """Stands in for a boto3 Session, handing out clients whose calls a Stubber answers."""

    def __init__(self, **clients) -> None:
        self.clients = clients
        self.made: list[tuple[str, dict]] = []  # (service, keyword arguments) of each client

    def client(self, service: str, **kwargs):
        self.made.append((service, kwargs))
        return self.clients[service]


def count_stubbed_calls(conn: AwsConnection, service: str):
    """The connection's client for ``service``, its call counter moved ahead of the Stubber's.

    The Stubber answers in a ``before-call.*.*`` handler, which botocore runs before the
    counter's less specific ``before-call`` one; answered there, the call would go uncounted.
    """
    client = conn.client(service)
    client.meta.events.unregister("before-call", conn.counter)
    client.meta.events.register_first("before-call.*.*", conn.counter)
    return client
