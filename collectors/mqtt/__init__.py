"""The concentrator (DCU) uplink bridge: DCU pushes in, normalized reading batches out."""
