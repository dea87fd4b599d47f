import pytest

from inventory.models import AccessKey, Account
from inventory.services.collection import collect_account
from tests.conftest import inject_error


@pytest.mark.django_db(transaction=True)
def test_it_collects_throttled(aws):
    iam = aws.client("iam")
    iam.create_user(UserName="alice", Tags=[{"Key": "owner", "Value": "Alice@Example.com"}])
    iam.create_access_key(UserName="alice")
    account = Account.objects.create(account_id="123456789012", name="main")
    state = inject_error(aws, "before-send.iam.GetAccountAuthorizationDetails", "Throttling", times=2)
    snap = collect_account(account.pk, session=aws)
    assert snap.status == "complete", snap.error
    assert state["injected"] == 2
    key = AccessKey.objects.get()
    assert key.user.owner == "alice@example.com"
