"""CTI: the AMI protocol and client, the live model of calls, queues and
operators, and what is published for browsers. No web code; imports only
``hotline.core``."""
