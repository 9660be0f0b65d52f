"""Everything that patches or guards auto_LiRPA 0.3."""
