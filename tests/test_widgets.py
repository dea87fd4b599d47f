"""FastSelect renders the same <select> as Django's, in Python."""

from __future__ import annotations

from django import forms

from inventory.widgets import FastSelect


def test_it_renders_choices_with_the_chosen_one_selected_and_text_escaped():
    widget = FastSelect(
        attrs={"class": "form-select"},
        choices=[("", "All accounts"), ("111111111111", "prod <eu>"), ("222222222222", "dev")],
    )

    html = widget.render("account", "111111111111", attrs={"id": "id_account"})

    assert html == (
        '<select class="form-select" id="id_account" name="account">'
        '<option value="">All accounts</option>'
        '<option value="111111111111" selected>prod &lt;eu&gt;</option>'
        '<option value="222222222222">dev</option></select>'
    )


def test_it_selects_nothing_for_an_empty_value_and_works_as_a_form_field_widget():
    class Form(forms.Form):
        account = forms.ChoiceField(
            choices=[("", "All"), ("1", "one")], required=False, widget=FastSelect
        )

    html = str(Form(data={"account": ""})["account"])

    assert "selected" not in html
    assert '<option value="1">one</option>' in html
