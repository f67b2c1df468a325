"""The site reconciler, from the fence on. Never imports reconciler.manager."""
