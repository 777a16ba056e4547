"""DATABASE_URL parsing: one clear error naming the setting, and never the password in messages."""

from __future__ import annotations

import pytest

from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError


def test_every_part_is_percent_decoded_and_mapped_for_dbt():
    url = DatabaseUrl.parse("postgresql://spotify%40dev:p%40ss%2Fw%3Ard@db.example:6543/my%20db")

    assert url.dbt_env() == {
        "DBT_POSTGRES_HOST": "db.example",
        "DBT_POSTGRES_PORT": "6543",
        "DBT_POSTGRES_USER": "spotify@dev",
        "DBT_POSTGRES_PASSWORD": "p@ss/w:rd",
        "DBT_POSTGRES_DBNAME": "my db",
    }
    assert DatabaseUrl.parse(str(url)) == url  # round-trips through its own string form


def test_port_defaults_to_5432_and_postgres_scheme_is_accepted():
    assert DatabaseUrl.parse("postgres://u:p@h/d").port == 5432


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("mysql://u:secret-pw@h/d", "scheme 'mysql'"),
        ("postgresql://u@h/d", "missing the password"),
        ("postgresql://u:secret-pw@h/", "missing the database name"),
        ("postgresql://u:secret-pw@h:notaport/d", "bad port"),
        ("not a url", "scheme '(none)'"),
    ],
)
def test_malformed_urls_name_the_setting_and_hide_the_password(url, complaint):
    with pytest.raises(ConfigError) as caught:
        DatabaseUrl.parse(url)

    assert complaint in str(caught.value)
    assert str(caught.value).startswith("DATABASE_URL")
    assert "secret-pw" not in str(caught.value)


def test_repr_and_redacted_form_hide_the_password():
    url = DatabaseUrl.parse("postgresql://u:secret-pw@h:5432/d")

    assert "secret-pw" not in repr(url) and "secret-pw" not in url.redacted()


def test_an_unreachable_server_is_a_config_error_without_the_password():
    url = DatabaseUrl.parse("postgresql://u:secret-pw@127.0.0.1:1/d")

    with pytest.raises(ConfigError) as caught:
        url.connect(connect_timeout=2)

    assert "cannot connect to postgresql://u:***@127.0.0.1:1/d" in str(caught.value)
    assert "secret-pw" not in str(caught.value)
