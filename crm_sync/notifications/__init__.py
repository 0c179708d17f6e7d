"""Citizens' notifications (issue 10): which appeal changes a citizen hears of, in
their language and by their channel, only with consent; SMS encoding, segments and
quiet hours (:mod:`.text`); templates from ``config/notifications.toml``
(:mod:`.templates`); the outbox router that turns appeal events into messages
(:mod:`.appeals`)."""
