"""The one table of settings: every reader, Config and the summary follow it."""

from dataclasses import fields

import pytest

from imagepuller.config import Config, OperatorSettings, load_config
from imagepuller.resource import SPEC_FIELDS, SPEC_SETTINGS
from imagepuller.settings import BY_SPEC_FIELD, ENV_ONLY_VARIABLES, SETTINGS, TABLE, Setting

BASE = {"IMAGES": "a=quay.io/a:1"}


def test_each_config_attribute_is_one_row_and_each_row_one_attribute():
    attributes = [setting.attribute for setting in TABLE]
    assert len(set(attributes)) == len(attributes)
    assert {f.name for f in fields(Config)} == set(attributes)
    assert len(SETTINGS) == len(TABLE)


@pytest.mark.parametrize("setting", TABLE, ids=lambda s: s.variable)
def test_each_default_is_a_valid_value_and_configs_own(setting):
    if setting.required:
        return
    assert getattr(load_config(BASE), setting.attribute) == setting.default_value
    assert getattr(Config(images=()), setting.attribute) == setting.default_value
    if setting.default:
        assert load_config({**BASE, setting.variable: setting.default}) == load_config(BASE)


def test_the_operator_shares_the_process_rows_defaults():
    process = {s.attribute: s for s in TABLE if s.scope == "process"}
    shared = {f.name for f in fields(OperatorSettings)} & set(process)
    assert {"metrics_port", "healthz_stuck_after_seconds", "log_level", "kubeconfig"} <= shared
    for attribute in shared:
        assert getattr(OperatorSettings(), attribute) == process[attribute].default_value


def test_a_process_setting_with_a_resource_field_is_refused():
    with pytest.raises(ValueError, match="a process setting has no resource field"):
        Setting("LOG_LEVEL", "log_level", "info", str, "", scope="process", spec_field="logLevel")


def test_a_resource_can_set_only_puller_settings():
    for setting in TABLE:
        if setting.scope == "process":
            assert setting.spec_field is None, setting.variable
    assert set(BY_SPEC_FIELD) == {s.spec_field for s in TABLE if s.spec_field}
    assert set(SPEC_SETTINGS) <= SPEC_FIELDS


def test_environment_only_settings_are_the_rows_not_live():
    assert {s.variable for s in TABLE if not s.live} == ENV_ONLY_VARIABLES - {"POD_NAME"}


def test_the_summary_shows_the_rows_that_are_shown_in_table_order():
    summary = load_config(BASE).summary()
    assert list(summary) == [s.attribute for s in TABLE if s.shown is not None]
