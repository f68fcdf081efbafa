"""Tests against a real OpenLDAP slapd on loopback."""
