"""The service's HTTP side: app assembly, health, management API, embedded Schema Registry."""
