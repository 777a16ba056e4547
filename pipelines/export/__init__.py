"""Import Spotify's privacy export (streaming history) into `raw`: `python -m pipelines import-history PATH`.

- `inputs`: find the streaming-history files in a zip, a folder or single files;
- `formats`: the two formats (extended streaming history, account data), their fields and raw tables;
- `json_array` + `reader`: decode a file chunk by chunk into validated Arrow batches (flat memory);
- `source`: the dlt source (Arrow batches -> CSV file imports -> COPY);
- `importer`: run it, then commit the new plays in one transaction (dedup, import log);
- `command`: the CLI's progress bar and summary; `problems`: errors naming file and row.
"""
