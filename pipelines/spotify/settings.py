"""Constants of the Spotify Web API and accounts service that the source relies on."""

DEFAULT_API_URL = "https://api.spotify.com/v1"
DEFAULT_ACCOUNTS_URL = "https://accounts.spotify.com"
TOKEN_PATH = "/api/token"  # noqa: S105 (a URL path, not a secret)
AUTHORIZE_PATH = "/authorize"

# The only scope the pipeline needs: read the user's recently played tracks.
SCOPE = "user-read-recently-played"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8888/callback"

# Spotify caps `limit` at 50 and, whatever the cursor, only ever shows the 50 most recent plays.
PAGE_LIMIT = 50
VISIBLE_WINDOW = 50

# The most pages one run reads. How Spotify fills `next` after an `after` query is undocumented, and a `next` that
# never ends would hang every later run while plays scroll out of the window. A page holds up to 50 plays and only
# 50 are visible, so a run normally needs one page (two when `next` leads to an empty one); ten pages still cover
# the window when a server sends a fifth of what `limit` asks for, and end a runaway run within seconds.
MAX_PAGES = 10

# HTTP behaviour: bounded retries so a flaky API cannot hang a scheduled run forever.
REQUEST_TIMEOUT_SECONDS = 30.0
MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 120.0

# The source's count of items it had to skip (no track object, no parsable played_at), reported per run.
REJECTED_ITEMS_METRIC = "rejected_items"
