"""Running the stack: embedded emulator, deploy, local event-source runner, producer, command line."""
