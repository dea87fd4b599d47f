"""Forms of the key-request pages. They check what a person typed; the service decides the rest
(inventory/services/key_requests.py)."""

from __future__ import annotations

from django import forms

from inventory.models import Account, IamUser
from inventory.widgets import FastSelect


class KeyRequestForm(forms.Form):
    """Ask for a new long-term access key for an IAM user that keygov knows."""

    account = forms.ModelChoiceField(
        label="AWS account",
        queryset=Account.objects.order_by("name", "account_id"),
        to_field_name="account_id",
        empty_label="Choose an account",
        widget=FastSelect(attrs={"class": "form-select"}),
    )
    user_name = forms.CharField(
        label="IAM user",
        max_length=128,
        widget=forms.TextInput(
            attrs={"class": "form-control", "autocomplete": "off", "spellcheck": "false"}
        ),
        help_text="The user's name, as in IAM. It must already be in keygov's inventory.",
    )
    justification = forms.CharField(
        label="What is the key for?",
        max_length=4000,
        widget=forms.Textarea(attrs={"class": "form-control", "rows": 3}),
    )
    why_not_role = forms.CharField(
        label="Why will an IAM role not do?",
        max_length=4000,
        widget=forms.Textarea(attrs={"class": "form-control", "rows": 3}),
        help_text=(
            "An instance profile, an ECS/EKS task role or IAM Identity Center gives temporary "
            "credentials that never need rotating. Say why none of them fits."
        ),
    )
    owner_email = forms.EmailField(
        label="Owner",
        max_length=320,
        widget=forms.EmailInput(attrs={"class": "form-control"}),
        help_text="Who answers for the key and gets its alerts. You, unless you say otherwise.",
    )
    review_on = forms.DateField(
        label="Expiry / review date",
        widget=forms.DateInput(attrs={"class": "form-control", "type": "date"}),
        help_text="When the key is to be rotated or reviewed: at most the policy's maximum age.",
    )

    def clean(self):
        data = super().clean()
        account, name = data.get("account"), (data.get("user_name") or "").strip()
        if account is not None and name:
            user = (
                IamUser.objects.filter(account=account, name=name, deleted=False)
                .select_related("account")
                .first()
            )
            if user is None:
                self.add_error(
                    "user_name",
                    f"keygov knows no IAM user {name!r} in {account}. Create the user in IAM "
                    "first; it appears here after the next collection.",
                )
            data["iam_user"] = user
        return data


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    comment = forms.CharField(max_length=4000)


class CommentForm(forms.Form):
    body = forms.CharField(
        label="Comment",
        max_length=4000,
        widget=forms.Textarea(attrs={"class": "form-control", "rows": 2}),
    )
