"""The docs task regenerates the published site only when what it was generated from has changed."""

from __future__ import annotations

from pipelines.orchestration import docs
from pipelines.transform.docs_site import SITE_FILES


def published(tmp_path, stamp):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    for name in SITE_FILES:
        (site / name).write_text("{}")
    docs.write_stamp(stamp, site)
    return site


def test_a_site_generated_from_this_manifest_and_database_is_current(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"nodes": {"model.spotify_history.plays": {}}}')
    stamp = docs.source_stamp(manifest, "127.0.0.1:5432/spotify")
    site = published(tmp_path, stamp)

    assert docs.is_current(docs.source_stamp(manifest, "127.0.0.1:5432/spotify"), site)
    # another database (its catalog differs), or a changed project: regenerate
    assert not docs.is_current(docs.source_stamp(manifest, "127.0.0.1:5432/other"), site)
    manifest.write_text('{"nodes": {"model.spotify_history.plays": {}, "model.spotify_history.tracks": {}}}')
    assert not docs.is_current(docs.source_stamp(manifest, "127.0.0.1:5432/spotify"), site)


def test_without_a_deploy_time_manifest_or_a_whole_site_the_docs_are_regenerated(tmp_path):
    assert docs.source_stamp(tmp_path / "missing.json", "db") is None
    assert not docs.is_current(None, published(tmp_path, None))
    assert not (tmp_path / "site" / docs.STAMP_FILE).exists()

    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    stamp = docs.source_stamp(manifest, "db")
    site = published(tmp_path, stamp)
    (site / "catalog.json").unlink()
    assert not docs.is_current(stamp, site)
