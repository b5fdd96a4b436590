"""HTTP routes: thin adapters from requests to the store, the pipeline and the job manager."""
