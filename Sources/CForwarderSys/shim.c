#include "CForwarderSys.h"
