"""Refusals of the services as HTTP answers: ``NotAllowed`` → 403, any other
``GovernanceError`` and Django's ``ValidationError`` → 400, each with the service's message as
``detail`` (the pages show the same sentence)."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from inventory.services.errors import GovernanceError, NotAllowed


class Refused(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Refused."
    default_code = "refused"


def exception_handler(exc, context):
    if isinstance(exc, NotAllowed):
        exc = exceptions.PermissionDenied(str(exc))
    elif isinstance(exc, GovernanceError):
        exc = Refused(str(exc))
    elif isinstance(exc, DjangoValidationError):
        exc = Refused(" ".join(exc.messages))
    return drf_exception_handler(exc, context)
