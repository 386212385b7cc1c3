"""The department's web console: staff review reports, answer hand-offs, confirm appointments and
watch the dashboard. An aiohttp app over the records database; every outcome leaves through the
outbox, never by calling a platform from here."""
