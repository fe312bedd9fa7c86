from django import forms

from ..levels import Level
from ..models import Incident, NotificationChannel, default_channel_levels
from .transports import config_errors


class ChannelForm(forms.ModelForm):
    """The channel's lists as ticks; which settings each kind needs is its transport's to say."""

    levels = forms.MultipleChoiceField(
        choices=Level.choices, widget=forms.CheckboxSelectMultiple, required=False, initial=default_channel_levels,
        help_text="An incident opening or escalating to a ticked level is sent here. Once told, the channel also "
                  "hears the incident's de-escalations and its resolve.")
    incident_kinds = forms.MultipleChoiceField(
        choices=Incident.Kind.choices, widget=forms.CheckboxSelectMultiple, required=False,
        help_text="None ticked: every kind, including kinds added later.")

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "enabled", "recipients", "url", "secret", "address_policy", "levels",
                  "incident_kinds", "repeat_minutes", "escalate_after_minutes", "group_wait_seconds",
                  "group_interval_minutes"]
        widgets = {"recipients": forms.Textarea(attrs={"rows": 3, "cols": 60}),
                   "url": forms.TextInput(attrs={"size": 80})}

    def _post_clean(self):
        super()._post_clean()  # the instance now holds the submitted values
        for field, error in config_errors(self.instance).items():
            self.add_error(field if field in self.fields else None, error)
