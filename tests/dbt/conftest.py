"""The export fixtures (a real import, an in-process `dbt build`) for the dbt tests that load exports too."""

from tests.export.conftest import dbt_build, import_into  # noqa: F401 - fixtures
