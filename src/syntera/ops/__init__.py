"""Operations: backups, statistics, maintenance."""
