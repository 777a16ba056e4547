"""Import Spotify's privacy export (streaming history) into `raw`: `python -m pipelines import-history PATH`.

- `inputs`: find the streaming-history files in a zip, a folder or single files;
- `formats`: the two formats (extended streaming history, account data), their fields and raw tables;
- `zip_members`: fast, CRC-checked streams of the zip's files;
- `text_encoding`: UTF-8 (with or without a BOM) passes through, UTF-16 is transcoded as it streams;
- `json_array` + `reader`: decode a file chunk by chunk into validated Arrow batches (flat memory);
- `importer` + `copy_worker`: stream the batches into the raw tables with COPY, overlapping parsing and
  loading, and commit the new plays in one transaction (dedup, import log); `tracking`: counts per file;
- `raw_tables`: the raw tables and the import log, created or migrated;
- `command`: the CLI's progress bar and summary; `problems`: errors naming file and row.
"""
