"""Account ids and role ARNs: refused with a message that shows what a good value looks like."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from inventory.models import Account
from inventory.validators import role_arn_account, validate_account_id, validate_role_arn


def message_of(exc: pytest.ExceptionInfo) -> str:
    return " ".join(exc.value.messages)


@pytest.mark.parametrize("value", ["123456789012", "000000000001"])
def test_it_accepts_a_12_digit_account_id(value):
    validate_account_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "12345678901",  # 11 digits
        "1234567890123",  # 13 digits
        "1234-5678-9012",  # as the console shows it
        "abcdefghijkl",
        "",
        " 123456789012",
        "123456789012\n",
        # Arabic-Indic and full-width digits are digits to Python, not to AWS.
        "".join(chr(0x0660 + int(d)) for d in "123456789012"),
        "".join(chr(0xFF10 + int(d)) for d in "123456789012"),
    ],
)
def test_it_refuses_an_account_id_that_is_not_12_digits(value):
    with pytest.raises(ValidationError) as exc:
        validate_account_id(value)

    assert exc.value.code == "invalid_account_id"
    assert message_of(exc) == (
        f"{value!r} is not an AWS account id: it must be exactly 12 digits, e.g. 123456789012."
    )


@pytest.mark.parametrize(
    ("value", "account"),
    [
        ("arn:aws:iam::123456789012:role/KeygovRead", "123456789012"),
        ("arn:aws:iam::123456789012:role/audit/KeygovRead", "123456789012"),
        ("arn:aws:iam::123456789012:role/service-role/a+b=c,d.e@f_g-h", "123456789012"),
        ("arn:aws-us-gov:iam::210987654321:role/KeygovRead", "210987654321"),
        ("arn:aws-cn:iam::210987654321:role/KeygovRead", "210987654321"),
    ],
)
def test_it_accepts_a_role_arn_and_reads_its_account(value, account):
    validate_role_arn(value)

    assert role_arn_account(value) == account


@pytest.mark.parametrize(
    "value",
    [
        "KeygovRead",  # a role name, not an ARN
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/audit/",  # a path without a name
        "arn:aws:iam::123456789012:role/Keygov Read",
        "arn:aws:iam::12345678901:role/KeygovRead",
        "arn:aws:sts::123456789012:assumed-role/KeygovRead/session",
        "arn:aws:iam:us-east-1:123456789012:role/KeygovRead",
        "arn:aws:iam::123456789012:role/KeygovRead\n",
        "arn:aws:iam::123456789012:role/KéygovRead",  # IAM names are ASCII
        "arn:aws:iam::" + chr(0xFF11) * 12 + ":role/KeygovRead",
        "arn:aws:iam::123456789012:role/" + "R" * 65,  # role names have at most 64 characters
    ],
)
def test_it_refuses_what_is_not_a_role_arn(value):
    with pytest.raises(ValidationError) as exc:
        validate_role_arn(value)

    assert exc.value.code == "invalid_role_arn"
    assert message_of(exc) == (
        f"{value!r} is not an IAM role ARN: expected arn:aws:iam::123456789012:role/RoleName."
    )
    assert role_arn_account(value) is None


# --- on the model -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_a_role_of_another_account():
    account = Account(
        account_id="123456789012",
        name="prod",
        role_arn="arn:aws:iam::210987654321:role/KeygovRead",
        write_role_arn="arn:aws:iam::210987654321:role/KeygovWrite",
    )

    with pytest.raises(ValidationError) as exc:
        account.full_clean()

    expected = (
        "This role is in account 210987654321, not in 123456789012: keygov reads each account "
        "through a role of that account."
    )
    assert exc.value.message_dict == {"role_arn": [expected], "write_role_arn": [expected]}


@pytest.mark.django_db
def test_it_refuses_a_malformed_account_id_and_role_arn_on_the_model():
    account = Account(account_id="1234", role_arn="KeygovRead")

    with pytest.raises(ValidationError) as exc:
        account.full_clean()

    errors = exc.value.message_dict
    assert errors["account_id"] == [
        "'1234' is not an AWS account id: it must be exactly 12 digits, e.g. 123456789012."
    ]
    assert errors["role_arn"] == [
        "'KeygovRead' is not an IAM role ARN: expected arn:aws:iam::123456789012:role/RoleName."
    ]


@pytest.mark.django_db
def test_it_refuses_an_external_id_without_a_role():
    account = Account(account_id="123456789012", external_id="ext-1")

    with pytest.raises(ValidationError) as exc:
        account.full_clean()

    assert exc.value.message_dict == {
        "external_id": ["An ExternalId only applies with a role ARN."]
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role_arn", "external_id"),
    [("", ""), ("arn:aws:iam::123456789012:role/audit/KeygovRead", "ext-1")],
)
def test_it_accepts_an_account_read_by_default_credentials_or_its_own_role(role_arn, external_id):
    account = Account(account_id="123456789012", role_arn=role_arn, external_id=external_id)

    account.full_clean()
