"""Where a study lives: the home (folders and store URLs, once), the embedded SQLite files, and the
study in Optuna's storage (open or join it, its notes, heartbeats, taking back dead processes'
trials)."""
