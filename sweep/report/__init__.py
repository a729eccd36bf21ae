"""Reports: what a study looks like. `view` gathers what a report shows as data (tests assert on
its numbers), `figures/` draws it (the only matplotlib and seaborn importer), `page` writes the
offline index.html, and `files.write_report` puts them all in the study's report folder."""
