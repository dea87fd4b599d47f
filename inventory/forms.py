"""Forms of keygov's actions. They check what a person typed; the services decide the rest."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.utils import timezone

from inventory.choices import MigrationStatus
from inventory.models.governance import MAX_EXCEPTION_DAYS
from inventory.validators import validate_role_arn


class MigrationForm(forms.Form):
    """Mark a key migrating or migrated to an IAM role."""

    status = forms.ChoiceField(
        label="The workload is",
        choices=[
            (MigrationStatus.MIGRATING, "Migrating: moving to the role, the key is still in use"),
            (MigrationStatus.MIGRATED, "Migrated: it runs on the role, the key can go"),
        ],
        initial=MigrationStatus.MIGRATING,
        widget=forms.RadioSelect(attrs={"class": "form-check-input"}),
    )
    role_arn = forms.CharField(
        label="Role ARN",
        max_length=2048,
        validators=[validate_role_arn],
        widget=forms.TextInput(
            attrs={
                "class": "form-control font-monospace-sm",
                "placeholder": "arn:aws:iam::123456789012:role/app-runner",
                "autocomplete": "off",
                "spellcheck": "false",
            }
        ),
        help_text="The IAM role the workload now assumes instead of using this key.",
    )
    note = forms.CharField(
        label="Note",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"class": "form-control", "rows": 2}),
        help_text="Optional: where the change was made (ticket, pull request).",
    )

    def clean_role_arn(self) -> str:
        return self.cleaned_data["role_arn"].strip()


class ExceptionRequestForm(forms.Form):
    """Ask that a key may break the policy until a date; another person approves it."""

    reason = forms.CharField(
        label="Why can this key not follow the policy?",
        max_length=4000,
        widget=forms.Textarea(attrs={"class": "form-control", "rows": 3}),
    )
    expires_on = forms.DateField(
        label="Exception ends on",
        widget=forms.DateInput(attrs={"type": "date", "class": "form-control"}),
        help_text=(
            f"At 00:00 UTC on this day the key is judged again. At most {MAX_EXCEPTION_DAYS} "
            "days from today."
        ),
    )

    def __init__(self, *args, today: date | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today or timezone.now().date()
        latest = self.today + timedelta(days=MAX_EXCEPTION_DAYS)
        widget = self.fields["expires_on"].widget
        widget.attrs.update(
            min=(self.today + timedelta(days=1)).isoformat(), max=latest.isoformat()
        )
        self.fields["expires_on"].initial = self.today + timedelta(days=90)

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why the key cannot follow the policy.")
        return reason

    def clean_expires_on(self) -> date:
        day = self.cleaned_data["expires_on"]
        if day <= self.today:
            raise forms.ValidationError("Pick a day after today.")
        if day > self.today + timedelta(days=MAX_EXCEPTION_DAYS):
            raise forms.ValidationError(
                f"An exception lasts at most {MAX_EXCEPTION_DAYS} days: pick "
                f"{(self.today + timedelta(days=MAX_EXCEPTION_DAYS)).isoformat()} or earlier."
            )
        return day

    @property
    def expires_at(self) -> datetime:
        """The moment the exception ends: the start (00:00 UTC) of the chosen day."""
        return datetime.combine(self.cleaned_data["expires_on"], time(0, 0), tzinfo=UTC)
