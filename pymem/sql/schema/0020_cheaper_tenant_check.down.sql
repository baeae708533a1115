-- Undo of revision 0020: the function only 0020 has. The bundle of 0019 then puts its
-- check_tenant back.
SET LOCAL ROLE pymem_owner;
DROP FUNCTION pymem.live_data_key_digests(char);
RESET ROLE;
