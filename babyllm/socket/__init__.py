"""A live run's control socket: the line format, the server every training process runs, the client, and
RemoteTutor (a TutorControl over the socket for an attached cockpit)."""
