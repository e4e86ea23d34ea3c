"""What every side of dfscan shares: errors, file helpers, labels, metrics."""
