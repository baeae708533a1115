-- pymem 0004 down: back to the types' default storage and TOAST threshold.
SET LOCAL ROLE pymem_owner;

ALTER TABLE pymem.memory_chunks
    ALTER COLUMN text_cipher SET STORAGE EXTENDED,
    ALTER COLUMN meta_cipher SET STORAGE EXTENDED,
    ALTER COLUMN emb_cipher SET STORAGE EXTENDED,
    ALTER COLUMN embedding SET STORAGE EXTERNAL,
    RESET (toast_tuple_target);

RESET ROLE;
